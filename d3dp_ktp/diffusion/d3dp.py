"""The D3DP diffusion wrapper: owns the schedule, the training objective and the sampler (docs/method.md §4).

Symbols follow the papers: x0 clean pose, x_t noisy pose, t diffusion step, ᾱ (alpha_bar), η (eta),
H hypotheses, K DDIM steps. The trainer only calls ``loss``; users only call ``sample``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import metrics, perf
from ..skeleton import Skeleton, flip_pose
from .config import DiffusionConfig, SamplingConfig
from .scheduler import D3DPScheduler, randn


_JOINT_WEIGHTS = {"h36m": metrics.H36M_JOINT_WEIGHTS, "humaneva15": metrics.HUMANEVA15_JOINT_WEIGHTS}


@dataclass
class LossOutput:
    loss: torch.Tensor        # what to call backward on (L·sg(L) when loss_scaled_gradient, else L)
    value: torch.Tensor       # the objective L itself (detached), for logging
    mpjpe: torch.Tensor       # MPJPE of x̂0 in metres (detached)


class D3DP(nn.Module):
    """x0-predicting conditional diffusion around a denoiser ``pose_estimator(x2d, x_t, t)``."""

    def __init__(self, pose_estimator: nn.Module, cfg: DiffusionConfig, skeleton: Skeleton,
                 keypoint_skeleton: Skeleton | None = None, sampling: SamplingConfig | None = None):
        super().__init__()
        cfg.validate()
        sampling = sampling or SamplingConfig()
        sampling.validate(cfg.num_train_timesteps)
        if cfg.weighted_mpjpe and skeleton.name not in _JOINT_WEIGHTS:
            raise ValueError(f"diffusion.weighted_mpjpe has joint weights for {list(_JOINT_WEIGHTS)} only, "
                             f"not layout '{skeleton.name}'")
        self.pose_estimator = pose_estimator
        self.cfg = cfg
        self.skeleton = skeleton
        self.keypoint_skeleton = keypoint_skeleton or skeleton
        self.sampling = sampling  # the defaults of sample(), saved with the checkpoint
        self.scheduler = D3DPScheduler(num_train_timesteps=cfg.num_train_timesteps, cosine_s=cfg.cosine_s)

    # ---------------------------------------------------------------- training
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(ᾱ_t)·x0 + sqrt(1-ᾱ_t)·ε, per sample t (DDPM eq. 4)."""
        return self.scheduler.add_noise(x0, noise, t)

    def noisy_input(self, y: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Network input for training: clamp(q_sample(scale·y), ±clamp·scale) / scale (docs/method.md §4.3.2)."""
        s, c = self.cfg.scale, self.cfg.clamp
        return torch.clamp(self.q_sample(y * s, t, noise), -c * s, c * s) / s

    def loss(self, x2d: torch.Tensor, y3d: torch.Tensor, t: torch.Tensor | None = None,
             noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> LossOutput:
        """Denoising objective on a batch. x2d (B, T, J, 2), y3d (B, T, J, 3) in metres.

        The target root is zeroed (the root column may carry the trajectory); the predicted root is
        not, so the loss pulls it to 0 as in D3DP. t (B,) and noise (B, T, J, 3) may be given.
        """
        _check_training_batch(x2d, y3d)
        B = y3d.shape[0]
        y = y3d.clone()
        y[..., self.skeleton.root, :] = 0
        # Drawn where the generator lives (the batch's device without one), so a training step makes no
        # host-device copy; on the CPU the draws are the same as before, which resume exactness relies on.
        where = generator.device if generator is not None else y.device
        if t is None:
            t = torch.randint(0, self.cfg.num_train_timesteps, (B,), generator=generator, device=where).to(y.device)
        if noise is None:
            noise = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=where).to(y.device)
        x_t = self.noisy_input(y, t, noise)
        y_hat = self.pose_estimator(x2d, x_t, t)
        value = self._objective(y_hat.float(), y)
        scaled = value * value.detach() if self.cfg.loss_scaled_gradient else value
        return LossOutput(loss=scaled, value=value.detach(), mpjpe=metrics.mpjpe(y_hat.detach().float(), y))

    def forward(self, x2d: torch.Tensor, y3d: torch.Tensor) -> LossOutput:
        """Training forward = ``loss``, so DistributedDataParallel sees the call and syncs gradients."""
        return self.loss(x2d, y3d)

    def _objective(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """MPJPE (D3DP), or WMPJPE + λ_tc·TC + λ_vel·MPJVE (KTPFormer eq. 14) when configured."""
        cfg = self.cfg
        if cfg.weighted_mpjpe:
            w = torch.tensor(_JOINT_WEIGHTS[self.skeleton.name], dtype=y.dtype, device=y.device)
            value = metrics.weighted_mpjpe(y_hat, y, w)
        else:
            w = torch.ones(y.shape[-2], dtype=y.dtype, device=y.device)
            value = metrics.mpjpe(y_hat, y)
        if cfg.lambda_tc > 0:
            value = value + cfg.lambda_tc * metrics.temporal_consistency(y_hat, w)
        if cfg.lambda_vel > 0:
            value = value + cfg.lambda_vel * metrics.mpjve(y_hat, y)
        return value

    # ---------------------------------------------------------------- sampling
    def flip_2d(self, x2d: torch.Tensor) -> torch.Tensor:
        return flip_pose(x2d, self.keypoint_skeleton.joints_left, self.keypoint_skeleton.joints_right)

    def flip_3d(self, x: torch.Tensor) -> torch.Tensor:
        return flip_pose(x, self.skeleton.joints_left, self.skeleton.joints_right)

    def predict_x0(self, x2d: torch.Tensor, x2d_flip: torch.Tensor | None, x: torch.Tensor,
                   t: int, dtype: str | torch.dtype | None = None, max_batch: int | None = None) -> torch.Tensor:
        """x̂0 = clamp(scale·f(x2d, clamp(x)/scale, t), ±clamp·scale), flip-averaged (docs/method.md §4.4-4.5).

        The un-flipped and flipped passes and all H hypotheses run as one batched forward, or as
        forwards of at most ``max_batch`` sequences (see `denoise`). With ``dtype`` bf16/fp16 only
        the network runs under autocast; the flip average and DDIM stay fp32.
        """
        s, c = self.cfg.scale, self.cfg.clamp
        x_in = torch.clamp(x, -c * s, c * s) / s
        B = x.shape[0]
        if x2d_flip is not None:
            x2d, x_in = torch.cat((x2d, x2d_flip)), torch.cat((x_in, self.flip_3d(x_in)))
        t_batch = torch.full((x_in.shape[0],), t, dtype=torch.long, device=x.device)
        with perf.autocast(x.device, dtype):
            out = self.denoise(x2d, x_in, t_batch, max_batch)
        out = out.float()
        p = out if x2d_flip is None else (out[:B] + self.flip_3d(out[B:])) / 2
        return torch.clamp(p * s, -c * s, c * s)

    def denoise(self, x2d: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, max_batch: int | None = None
                ) -> torch.Tensor:
        """pose_estimator(x2d (B, T, J, 2), x_t (B, H, T, J, 3), t (B,)) -> (B, H, T, J, 3), run on at most
        ``max_batch`` sequences (window x hypothesis) at a time; None: all in one call.

        Every sequence is denoised independently, so the split changes no value. It bounds the size
        of the network's intermediates: on the CPU, tensors above the allocator's mmap threshold are
        returned to the OS after every op and page-faulted in again (`inference.pipeline.auto_batch`).
        """
        B, H = x_t.shape[:2]
        if max_batch is None or B * H <= max_batch:
            return self.pose_estimator(x2d, x_t, t)
        h = min(H, max_batch)            # hypotheses per call; whole windows when they fit
        b = max(1, max_batch // h)       # windows per call
        return torch.cat([torch.cat([self.pose_estimator(x2d[i:i + b], x_t[i:i + b, j:j + h], t[i:i + b])
                                     for j in range(0, H, h)], dim=1) for i in range(0, B, b)])

    @torch.no_grad()
    def sample(self, x2d: torch.Tensor, num_hypotheses: int | None = None, num_steps: int | None = None,
               eta: float | None = None, flip: bool | None = None, generator: torch.Generator | None = None,
               latents: torch.Tensor | None = None, step_noise: torch.Tensor | None = None,
               dtype: str | torch.dtype | None = None, max_batch: int | None = None) -> torch.Tensor:
        """Draw H hypotheses with K DDIM steps; returns x̂0 of every step, (B, K, H, T, J, 3) metres.

        x2d: (B, T, J, 2) normalised 2D. H, K, eta, flip and dtype default to ``self.sampling`` (the
        checkpoint's). latents: (B, H, T, J, 3) initial x_T (scaled space); step_noise: (K-1, B, H,
        T, J, 3) the z of each non-final step. Either makes a run exactly reproducible; otherwise
        noise comes from ``generator`` (or the global CPU RNG). ``dtype`` 'bf16' or 'fp16' runs the
        network under autocast (GPU fast path). ``max_batch``: at most this many sequences (window x
        hypothesis, flipped copies included) per denoiser call (`denoise`); None = all at once. The
        denoiser runs in eval mode (BatchNorm running statistics), its previous mode is restored.
        """
        s = self.sampling
        if (num_hypotheses, num_steps, eta, flip) != (None,) * 4:
            s = s.override(num_hypotheses=num_hypotheses, num_steps=num_steps, eta=eta, flip=flip)
            s.validate(self.cfg.num_train_timesteps)
        dtype = s.dtype if dtype is None else dtype
        if max_batch is not None and (not isinstance(max_batch, int) or max_batch < 1):
            raise ValueError(f"max_batch must be an integer >= 1 sequences per denoiser call, got {max_batch!r}")
        _check_2d(x2d)
        self._check_model_shape(x2d)
        shape = (x2d.shape[0], s.num_hypotheses, *x2d.shape[1:3], 3)
        latents, step_noise = _check_noise(latents, step_noise, shape, s.num_steps)
        was_training = self.training
        self.eval()
        try:
            return self._ddim_loop(x2d.float(), s.num_steps, s.eta, s.flip, generator, latents, step_noise, shape,
                                   dtype, max_batch)
        finally:
            self.train(was_training)

    def _check_model_shape(self, x2d: torch.Tensor) -> None:
        """Name x2d in the error before the flip or the network meets a wrong joint/frame count."""
        cfg = getattr(self.pose_estimator, "cfg", None)
        if cfg is None:
            return
        if x2d.shape[2] != cfg.num_joints:
            raise ValueError(f"x2d has {x2d.shape[2]} joints but the model was built for {cfg.num_joints} joints "
                             f"(layout '{cfg.keypoint_layout or cfg.layout}')")
        if x2d.shape[1] != cfg.num_frames:
            raise ValueError(f"x2d has {x2d.shape[1]} frames but the model was built for T={cfg.num_frames} "
                             "frames; pad or cut the sequence into windows of T frames")

    def _ddim_loop(self, x2d, K, eta, flip, generator, latents, step_noise, shape, dtype, max_batch=None
                   ) -> torch.Tensor:
        """docs/method.md §4.4: x ~ N(0, I); for each (t, t_next): x̂0 = f(...), x <- DDIM step.

        Given noise is moved to the device once; without it the scheduler's ``step`` draws z from
        ``generator``, so the step noise is decided in one place.
        """
        device = x2d.device
        x = latents.to(device, torch.float32) if latents is not None else randn(shape, generator, device)
        if step_noise is not None:
            step_noise = step_noise.to(device, torch.float32)
        x2d_flip = self.flip_2d(x2d) if flip else None
        scheduler = self.scheduler
        scheduler.set_timesteps(K)
        outputs = []
        for k, (t, t_next) in enumerate(scheduler.time_pairs()):
            x0 = self.predict_x0(x2d, x2d_flip, x, t, dtype, max_batch)
            outputs.append(x0)
            z = step_noise[k] if step_noise is not None and t_next >= 0 else None
            x = scheduler.step(x0, t, x, eta=eta, variance_noise=z,
                               generator=generator if step_noise is None else None).prev_sample
        return torch.stack(outputs, dim=1)


def _check_2d(x2d) -> None:
    if not isinstance(x2d, torch.Tensor) or x2d.dim() != 4 or x2d.shape[-1] != 2:
        shape = tuple(x2d.shape) if isinstance(x2d, torch.Tensor) else type(x2d).__name__
        raise ValueError(f"x2d must be a tensor of shape (B, T, J, 2), got {shape}")
    if x2d.shape[0] == 0 or x2d.shape[1] == 0:
        raise ValueError(f"x2d is empty: shape {tuple(x2d.shape)}")
    if not torch.isfinite(x2d).all():
        raise ValueError("x2d contains NaN or inf; fill missing keypoints before sampling")


def _check_training_batch(x2d, y3d) -> None:
    """The 2D condition and its 3D target: x2d (B, T, J, 2), y3d (B, T, J, 3)."""
    _check_2d(x2d)
    if not isinstance(y3d, torch.Tensor) or y3d.shape[:-1] != x2d.shape[:-1] or y3d.shape[-1] != 3:
        raise ValueError(f"y3d must have shape {tuple(x2d.shape[:-1]) + (3,)} to match x2d, "
                         f"got {tuple(getattr(y3d, 'shape', ()))}")


def _check_noise(latents, step_noise, shape, K):
    if latents is not None and tuple(latents.shape) != shape:
        raise ValueError(f"latents must have shape (B, H, T, J, 3) = {shape}, got {tuple(latents.shape)}")
    if step_noise is not None and tuple(step_noise.shape) != (K - 1, *shape):
        raise ValueError(f"step_noise must have shape (K-1, B, H, T, J, 3) = {(K - 1, *shape)}, "
                         f"got {tuple(step_noise.shape)}")
    return latents, step_noise
