"""d3dp-ktp: D3DP-style diffusion 3D human pose lifting with a KTPFormer denoiser."""

__version__ = "0.1.0"
