"""eval/*.py end to end on generated files with a tiny checkpoint; reports; clear input errors."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from d3dp_ktp.checkpoints import save_checkpoint
from d3dp_ktp.diffusion import DiffusionConfig
from d3dp_ktp.factory import build_diffusion
from d3dp_ktp.models import ModelConfig
from d3dp_ktp.sampling import SamplingConfig

from .helpers import mpi_sequence, write_h36m, write_humaneva, write_mpi_inf_3dhp

REPO = Path(__file__).resolve().parents[2]


def script(name: str):
    spec = importlib.util.spec_from_file_location(f"eval_{name}", REPO / "eval" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return lambda argv: module.main(module.DATASET, argv)


def tiny_checkpoint(path: Path, sampling: SamplingConfig | None = None, **model) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig(channels=32, num_heads=4, depth=1, num_frames=9, **model)
    return save_checkpoint(build_diffusion(cfg, DiffusionConfig(), sampling), path)


COMMON = ["-H", "2", "-K", "2", "--device", "cpu", "--no-progress"]


def test_h36m_cli_writes_md_csv_json_png_for_both_modes_and_the_sweep(tmp_path):
    write_h36m(tmp_path / "data")
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    out = tmp_path / "out"
    rc = script("h36m")(["--checkpoint", str(ckpt), "--data-dir", str(tmp_path / "data"), "--keypoints", "gt",
                         "--mode", "both", "--by-subject", "--hypotheses-sweep", "1,2", "--out", str(out), *COMMON])
    assert rc == 0
    for mode in ("official", "clean"):
        for suffix in (".md", ".csv", ".json", "_steps.png", "_actions.png", "_sweep_h.png"):
            assert (out / f"h36m_{mode}{suffix}").stat().st_size > 0
        md = (out / f"h36m_{mode}.md").read_text()
        assert f"mode: **{mode}**" in md and "| Metric | Eat | Walk | Avg |" in md and "subject S11" in md
        data = json.loads((out / f"h36m_{mode}.json").read_text())
        s = data["settings"]
        assert (s["mode"], s["num_hypotheses"], s["num_steps"], s["batch_size"], s["seed"], s["keypoints"]) == \
            (mode, 2, 2, 4, 1, "gt")
        assert len(s["checkpoint_sha256"]) == 64 and s["num_frames"] > 0 and s["dataset"] == "h36m"
        assert set(data["hypotheses_sweep"]) == {"1", "2"} and set(data["by_subject"]) == {"S9", "S11"}
        csv = (out / f"h36m_{mode}.csv").read_text().splitlines()
        assert csv[0] == "mode,subject,protocol,metric,step,group,value_mm,frames"
        assert any(line.startswith(f"{mode},all,2,J-Agg,2,Avg,") for line in csv)
    assert not list(out.glob(".*"))  # atomic writes leave no temporary files


def test_mpi_inf_3dhp_cli_reads_annot_mat_and_writes_pck_tables(tmp_path):
    seqs = {"TS1": mpi_sequence("TS1", 12, 0), "TS6": mpi_sequence("TS6", 10, 1)}
    write_mpi_inf_3dhp(tmp_path / "data", seqs, tmp_path / "annot")
    ckpt = tiny_checkpoint(tmp_path / "ckpt", layout="mpi_inf_3dhp")
    out = tmp_path / "out"
    rc = script("mpi_inf_3dhp")(["--checkpoint", str(ckpt), "--data-dir", str(tmp_path / "data"), "--subjects",
                                 "TS1,TS6", "--annot-mat-dir", str(tmp_path / "annot"), "--out", str(out), *COMMON])
    assert rc == 0
    data = json.loads((out / "mpi_inf_3dhp_official.json").read_text())
    assert data["settings"]["batch_size"] == 2 and data["settings"]["jpma_space"] == "pixels"
    pck = data["mpi_inf_3dhp"]["J-Agg"]
    assert set(pck["sequences"]) == {"TS1", "TS6"} and pck["activities"]
    assert 0 <= pck["mean"]["PCK"][-1] <= 100 and pck["all"]["frames"] == sum(int(d["valid"].sum())
                                                                              for d in seqs.values())
    assert "PCK@150mm" in (out / "mpi_inf_3dhp_official.md").read_text()
    assert (out / "mpi_inf_3dhp_official_pck.csv").read_text().startswith("mode,metric,step,scope,name,PCK")


def test_humaneva_cli_skips_j_agg_and_reports_per_subject(tmp_path):
    write_humaneva(tmp_path / "data")
    ckpt = tiny_checkpoint(tmp_path / "ckpt", layout="humaneva15", num_joints=15)
    out = tmp_path / "out"
    rc = script("humaneva")(["--checkpoint", str(ckpt), "--data-dir", str(tmp_path / "data"),
                             "--subjects", "Validate/S1,Validate/S2", "--out", str(out), "--no-p2", *COMMON])
    assert rc == 0
    data = json.loads((out / "humaneva_official.json").read_text())
    assert set(data["summary_mm"]) == {"J-Best", "P-Best", "P-Agg"}
    assert set(data["by_subject"]) == {"Validate/S1", "Validate/S2"}
    assert set(data["per_action_mm"]["J-Best"]) == {"Walking", "Jog"}
    assert any("J-Agg" in n for n in data["notes"])


@pytest.fixture(scope="module")
def h36m_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("h36m")
    write_h36m(root / "data")
    return root / "data", tiny_checkpoint(root / "ckpt"), tiny_checkpoint(root / "ckpt15", layout="humaneva15",
                                                                          num_joints=15)


@pytest.mark.parametrize("argv, message", [
    (["--data-dir", "{tmp}/nowhere"], "does not exist"),
    (["--keypoints", "cpn_ft_h36m_dbb"], "unknown keypoints 'cpn_ft_h36m_dbb'.*available.*: gt"),
    (["--checkpoint", "{tmp}/missing.bin"], "checkpoint .* does not exist"),
    (["--checkpoint", "{ckpt15}"], "checkpoint mismatch: the model predicts 15 joints"),
    (["--frames", "243"], "checkpoint mismatch: .* T=9 frames"),
    (["--subjects", "S7"], "S7"),
])
def test_bad_input_gives_clear_messages(h36m_files, tmp_path, capsys, argv, message):
    import re
    data, ckpt, ckpt15 = h36m_files
    base = {"--checkpoint": str(ckpt), "--data-dir": str(data), "--keypoints": "gt"}
    argv = [a.format(tmp=tmp_path, ckpt15=ckpt15) for a in argv]
    base.update(dict(zip(argv[::2], argv[1::2])))
    rc = script("h36m")([x for kv in base.items() for x in kv] + COMMON)
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and re.search(message, err), err


def test_help_runs_as_a_script():
    out = subprocess.run([sys.executable, str(REPO / "eval" / "mpi_inf_3dhp.py"), "--help"], capture_output=True,
                         text=True, cwd="/", timeout=120)
    assert out.returncode == 0 and "--annot-mat-dir" in out.stdout and "PCK" in out.stdout


def test_custom_cli_reports_all_four_aggregations(tmp_path):
    import numpy as np

    from tests.data.fixtures import write_custom
    write_custom(tmp_path / "data", np.random.RandomState(0), name="mocap", keypoints="gt")
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    out = tmp_path / "out"
    rc = script("custom")(["--checkpoint", str(ckpt), "--data-dir", str(tmp_path / "data"), "--name", "mocap",
                           "--subjects", "B", "--out", str(out), "--mode", "both", "--no-p2", *COMMON])
    assert rc == 0
    for mode in ("official", "clean"):
        data = json.loads((out / f"mocap_{mode}.json").read_text())  # named after the dataset
        assert set(data["summary_mm"]) == {"J-Best", "P-Best", "P-Agg", "J-Agg"}
        assert all(np.isfinite(v).all() for v in data["summary_mm"].values())


def test_eval_samples_with_the_checkpoints_own_settings_unless_a_flag_is_given(tmp_path):
    write_h36m(tmp_path / "data")
    ckpt = tiny_checkpoint(tmp_path / "ckpt", SamplingConfig(num_hypotheses=3, num_steps=2, eta=0.5, seed=7))
    base = ["--checkpoint", str(ckpt), "--data-dir", str(tmp_path / "data"), "--keypoints", "gt", "--device", "cpu",
            "--no-progress", "--no-p2", "--max-windows", "2"]

    def settings(out: str, *flags: str) -> dict:
        assert script("h36m")([*base, "--out", str(tmp_path / out), *flags]) == 0
        return json.loads((tmp_path / out / "h36m_official.json").read_text())["settings"]

    s = settings("own")
    assert (s["num_hypotheses"], s["num_steps"], s["eta"], s["flip"], s["seed"]) == (3, 2, 0.5, True, 7)
    s = settings("given", "-K", "1", "--no-flip", "--seed", "2")
    assert (s["num_hypotheses"], s["num_steps"], s["eta"], s["flip"], s["seed"]) == (3, 1, 0.5, False, 2)


def test_custom_cli_without_subjects_evaluates_the_files_held_out_subjects(tmp_path, capsys):
    import numpy as np

    from tests.data.fixtures import write_custom
    write_custom(tmp_path / "data", np.random.RandomState(0), name="mine", keypoints="gt")
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    argv = ["--checkpoint", str(ckpt), "--data-dir", str(tmp_path / "data"), "--name", "mine", "--mode", "clean",
            "--no-p2", *COMMON]
    assert script("custom")(argv + ["--out", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "mine_clean.json").read_text())["settings"]["subjects"] == ["A", "B"]
    assert "subjects: A, B" in capsys.readouterr().out


def test_custom_default_subjects_leave_out_the_cmu_training_subjects(monkeypatch):
    spec = importlib.util.spec_from_file_location("eval_custom_subjects", REPO / "eval" / "custom.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "custom_subjects", lambda root, name: ["cmu01", "cmu07", "cmu60", "cmu61"])
    assert module.default_subjects("data", "cmu") == ["cmu07", "cmu61"]
    monkeypatch.setattr(module, "custom_subjects", lambda root, name: ["cmu01", "cmu60"])
    with pytest.raises(ValueError, match="pass --subjects"):
        module.default_subjects("data", "cmu")
