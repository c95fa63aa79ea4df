"""Device binding as a pure decision: the variables and placeholder values a server
placed on given devices is started with (issue 17, point 1). The real processes that
see them are in ``tests/integration/test_device_binding_processes.py``."""

from __future__ import annotations

import pytest

from modelpool.backends.device_binding import (
    BindingError,
    env_problem,
    placeholders,
    visibility,
)
from modelpool.backends.llamacpp import LlamaCppOptions, server_command
from modelpool.backends.process import PLACEHOLDERS, ProcessOptions
from modelpool.core.handle import Placement

ACROSS = Placement(("cuda:1", "cuda:3"), (0.25, 0.75))


def test_one_gpu_is_the_only_one_visible() -> None:
    assert visibility(Placement.one("cuda:1"), {}) == {
        "CUDA_VISIBLE_DEVICES": "1",
        "HIP_VISIBLE_DEVICES": "1",
    }


def test_a_model_across_devices_sees_all_of_them_main_first() -> None:
    assert visibility(ACROSS, {})["CUDA_VISIBLE_DEVICES"] == "1,3"
    backwards = Placement(("cuda:3", "cuda:1"), (0.5, 0.5))
    assert visibility(backwards, {})["CUDA_VISIBLE_DEVICES"] == "3,1"


def test_cpu_hides_every_gpu() -> None:
    assert visibility(Placement.one("cpu"), {"CUDA_VISIBLE_DEVICES": "0,1"}) == {
        "CUDA_VISIBLE_DEVICES": "",
        "HIP_VISIBLE_DEVICES": "-1",
    }


@pytest.mark.parametrize("device", ["mps", "xpu:0", "host"])
def test_devices_the_pool_cannot_bind_leave_the_environment_alone(device: str) -> None:
    assert visibility(Placement.one(device), {"CUDA_VISIBLE_DEVICES": "2"}) == {}


def test_the_pools_own_visible_devices_say_which_gpu_cuda_n_is() -> None:
    """A pool started with CUDA_VISIBLE_DEVICES=2,3 calls physical GPU 3 cuda:1: its
    server must be given 3, not 1 (that would be a GPU the pool does not even use)."""
    own = {"CUDA_VISIBLE_DEVICES": "2,3"}
    assert visibility(Placement.one("cuda:1"), own)["CUDA_VISIBLE_DEVICES"] == "3"
    uuids = {"CUDA_VISIBLE_DEVICES": "GPU-aaa,GPU-bbb"}
    assert visibility(Placement.one("cuda:1"), uuids)["CUDA_VISIBLE_DEVICES"] == "GPU-bbb"


def test_hip_counts_in_its_own_variable_when_the_pool_has_one() -> None:
    own = {"CUDA_VISIBLE_DEVICES": "4,5", "HIP_VISIBLE_DEVICES": "6,7"}
    bound = visibility(Placement.one("cuda:0"), own)
    assert bound == {"CUDA_VISIBLE_DEVICES": "4", "HIP_VISIBLE_DEVICES": "6"}


def test_rocr_visible_devices_is_left_to_the_pool() -> None:
    """HIP's indices count within ROCR's devices: setting both would filter twice."""
    bound = visibility(ACROSS, {"ROCR_VISIBLE_DEVICES": "0,1,2,3"})
    assert "ROCR_VISIBLE_DEVICES" not in bound
    assert bound["HIP_VISIBLE_DEVICES"] == "1,3"


@pytest.mark.parametrize(
    ("own", "seen"), [("0,1", "cuda:0 to cuda:1"), ("", "no GPU"), ("0", "cuda:0 to cuda:0")]
)
def test_a_gpu_the_pool_cannot_see_is_an_error_naming_both(own: str, seen: str) -> None:
    with pytest.raises(BindingError) as error:
        visibility(Placement.one("cuda:3"), {"CUDA_VISIBLE_DEVICES": own})
    assert "cuda:3" in str(error.value)
    assert f"CUDA_VISIBLE_DEVICES is {own!r} ({seen})" in str(error.value)


def test_placeholders_of_one_device_and_of_several() -> None:
    assert placeholders(Placement.one("cuda:2")) == {
        "DEVICE": "cuda:2",
        "DEVICE_INDEX": "2",
        "DEVICE_INDICES": "2",
        "DEVICE_COUNT": "1",
        "TENSOR_SPLIT": "1",
    }
    assert placeholders(ACROSS) == {
        "DEVICE": "cuda:1",
        "DEVICE_INDEX": "1",
        "DEVICE_INDICES": "1,3",
        "DEVICE_COUNT": "2",
        "TENSOR_SPLIT": "0.25,0.75",
    }


def test_cpu_has_no_index() -> None:
    values = placeholders(Placement.one("cpu"))
    assert values["DEVICE"] == "cpu"
    assert values["DEVICE_INDEX"] is None
    assert values["DEVICE_INDICES"] is None
    assert values["DEVICE_COUNT"] == "1"


def test_every_device_placeholder_is_known_to_the_process_options() -> None:
    assert set(placeholders(ACROSS)) <= set(PLACEHOLDERS)
    command = ["srv", "${DEVICE}", "${DEVICE_INDEX}", "${DEVICE_INDICES}", "${DEVICE_COUNT}"]
    ProcessOptions.model_validate({"command": [*command, "${TENSOR_SPLIT}"]})


@pytest.mark.parametrize(
    "name", ["CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"]
)
def test_a_models_env_may_not_set_device_visibility(name: str) -> None:
    problem = env_problem({name: "0", "OTHER": "x"})
    assert problem is not None
    assert name in problem
    assert "placement" in problem
    with pytest.raises(ValueError, match=name):
        ProcessOptions.model_validate({"command": ["srv"], "env": {name: "0"}})


def test_other_env_is_fine() -> None:
    assert env_problem({"CUDA_DEVICE_ORDER": "FASTEST_FIRST", "OMP_NUM_THREADS": "4"}) is None


def llama_options() -> LlamaCppOptions:
    return LlamaCppOptions.model_validate({"model_path": "/models/m.gguf", "n_gpu_layers": -1})


def test_llamacpp_splits_a_model_across_devices_from_the_placement() -> None:
    argv = server_command(llama_options(), ACROSS)
    at = argv.index("--tensor_split")
    assert argv[at : at + 5] == ["--tensor_split", "0.25", "0.75", "--main_gpu", "0"]


@pytest.mark.parametrize("placement", [None, Placement.one("cuda:2"), Placement.one("cpu")])
def test_llamacpp_on_one_device_passes_no_split(placement: Placement | None) -> None:
    argv = server_command(llama_options(), placement)
    assert "--tensor_split" not in argv
    assert "--main_gpu" not in argv


def test_llama_cpp_servers_own_parser_reads_the_split() -> None:
    """The flags are llama_cpp.server's (its settings' names, one number per device),
    checked with its own argument parser: a flag it does not know fails the start."""
    import argparse

    cli = pytest.importorskip("llama_cpp.server.cli")
    settings = pytest.importorskip("llama_cpp.server.settings")
    parser = argparse.ArgumentParser()
    cli.add_args_from_model(parser, settings.Settings)
    argv = [item.replace("${PORT}", "8080") for item in server_command(llama_options(), ACROSS)]
    args = parser.parse_args(argv[3:])  # after "python -m llama_cpp.server"
    model = cli.parse_model_from_args(settings.ModelSettings, args)
    assert model.tensor_split == [0.25, 0.75]
    assert model.main_gpu == 0
    assert model.n_gpu_layers == -1
