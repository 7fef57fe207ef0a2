"""The one reading of a device setting."""
import pytest
import torch

from d3dp_ktp.device import resolve_device


def test_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("name", ["gpu", "cuda1", "cuda:x", "CPU", ""])
def test_unknown_devices_name_the_setting(name):
    with pytest.raises(ValueError, match=r"unknown device .*\(--device\); use auto, cpu, cuda or cuda:N"):
        resolve_device(name, "--device")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_says_what_to_use():
    with pytest.raises(ValueError, match=r"eval.device=cuda:1 but CUDA is not available .*use auto or cpu"):
        resolve_device("cuda:1", "eval.device")
