"""Workload generators and trace readers: each rule shows in the requests it makes."""

from __future__ import annotations

import csv
import gzip
import itertools
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

import modelpool
from modelpool.sim.models import ModelSet, demo_model_set
from modelpool.sim.traces import (
    AZURE_ENV,
    azure_trace,
    default_azure_path,
    llm_ids,
    load_csv,
)
from modelpool.sim.workload import Request, Workload
from modelpool.sim.workloads import (
    WORKLOADS,
    bursty,
    diurnal,
    make_workload,
    phases,
    zipf_drift,
)

SYNTHETIC = ["zipf", "bursty", "phases", "diurnal", "fragmentation"]
MODELS = demo_model_set()


def in_window(workload: Workload, start: float, end: float) -> list[Request]:
    return [r for r in workload.requests if start <= r.time < end]


def top_model(requests: list[Request]) -> tuple[str, float]:
    """The most requested model and its share."""
    model, count = Counter(r.model for r in requests).most_common(1)[0]
    return model, count / len(requests)


def share(requests: list[Request], tag: str) -> float:
    return sum(tag in MODELS[r.model].tags for r in requests) / len(requests)


def longest_silence(workload: Workload, model: str, duration: float) -> float:
    times = [0.0, *(r.time for r in workload.requests if r.model == model), duration]
    return max(b - a for a, b in itertools.pairwise(times))


# --- every generator -------------------------------------------------------------------


def test_the_registry_names_the_synthetic_generators_and_the_azure_trace() -> None:
    assert set(WORKLOADS) == {*SYNTHETIC, "azure"}


@pytest.mark.parametrize("name", SYNTHETIC)
def test_a_seed_gives_the_same_requests_and_another_seed_others(name: str) -> None:
    make = WORKLOADS[name]
    first = make(MODELS, requests=500, seed=7)
    assert make(MODELS, requests=500, seed=7).requests == first.requests
    assert make(MODELS, requests=500, seed=8).requests != first.requests


@pytest.mark.parametrize("name", SYNTHETIC)
def test_requests_are_sorted_inside_the_duration_with_tokens_by_model_kind(name: str) -> None:
    workload = WORKLOADS[name](MODELS)
    times = [r.time for r in workload.requests]
    assert len(times) == 3600
    assert times == sorted(times)
    assert times[0] >= 0
    assert times[-1] < 3600
    assert set(workload.models()) <= set(MODELS.ids)
    for request in workload.requests:
        assert request.service is None
        llm = request.model in llm_ids(MODELS)
        assert (request.output_tokens > 0) == llm, request


def test_llm_token_counts_have_the_stated_medians() -> None:
    llm = [r for r in zipf_drift(MODELS, requests=3000).requests if r.model in llm_ids(MODELS)]
    prompts = sorted(r.prompt_tokens for r in llm)
    outputs = sorted(r.output_tokens for r in llm)
    assert 400 < prompts[len(prompts) // 2] < 620
    assert 120 < outputs[len(outputs) // 2] < 190


# --- one rule each ---------------------------------------------------------------------


def test_zipf_is_skewed_and_its_favourite_drifts() -> None:
    workload = zipf_drift(MODELS, seed=3)  # re-ranked every 600 s
    tops = [top_model(in_window(workload, t, t + 600)) for t in range(0, 3600, 600)]
    assert all(top_share > 2 / len(MODELS.ids) for _, top_share in tops)  # uniform: 1/8
    favourites = [model for model, _ in tops]
    assert all(a != b for a, b in itertools.pairwise(favourites))
    assert len(set(favourites)) >= 3
    steady = zipf_drift(MODELS, seed=3, drift_every=1e9)
    assert top_model(in_window(steady, 0, 600))[0] == top_model(in_window(steady, 3000, 3600))[0]


def test_bursty_models_fall_silent_for_long_stretches() -> None:
    workload = bursty(MODELS, seed=1)
    used = workload.models()
    assert len(used) >= 6
    assert all(longest_silence(workload, m, 3600) > 300 for m in used)
    steady = zipf_drift(MODELS, seed=1, drift_every=1e9)
    assert longest_silence(steady, steady.models()[0], 3600) < 60  # the contrast


def test_phases_send_most_requests_to_the_phase_tag_and_trickle_embeddings() -> None:
    workload = phases(MODELS, seed=2)  # 300 s each: code, chat, image, speech, code, ...
    for start, tag in ((0, "code"), (300, "chat"), (600, "image"), (900, "speech")):
        window = in_window(workload, start, start + 300)
        assert share(window, tag) > 0.8, tag
        assert 0 < share(window, "embedding") < 0.15, tag
    assert share(in_window(workload, 1200, 1500), "code") > 0.8  # the cycle restarts


def test_phases_skip_a_tag_that_no_model_has() -> None:
    no_images = ModelSet(
        "no-images", tuple(m for m in MODELS.models if "image" not in m.tags), MODELS.budgets
    )
    workload = phases(no_images, seed=2)
    assert workload.params["tags"] == ["code", "chat", "speech"]
    assert share(in_window(workload, 600, 900), "speech") > 0.8


def test_diurnal_rate_peaks_at_noon_with_day_models_and_nights_are_batch() -> None:
    workload = diurnal(MODELS, seed=4)  # midnight at 0 and 3600, noon at 1800
    noon = in_window(workload, 1500, 2100)
    night = in_window(workload, 0, 300) + in_window(workload, 3300, 3600)
    assert len(noon) > 2.5 * len(night)  # peak-to-trough 4 at the extremes
    day_share = share(noon, "chat") + share(noon, "code")
    night_share = share(night, "chat") + share(night, "code")
    assert day_share > 0.8 > 0.4 > night_share


# --- the Azure trace -------------------------------------------------------------------


@pytest.fixture(scope="module")
def azure_rows() -> list[dict[str, str]]:
    with gzip.open(default_azure_path(), "rt", newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def azure() -> Workload:
    return azure_trace(MODELS)


def test_azure_keeps_the_real_arrivals_and_tokens(
    azure: Workload, azure_rows: list[dict[str, str]]
) -> None:
    assert len(azure.requests) == len(azure_rows) == 19_366
    assert azure.requests[0].time == 0.0
    assert azure.requests[-1].time == pytest.approx(3501.721937, abs=1e-3)
    for index in (0, 1, 9_999, 19_365):
        request, row = azure.requests[index], azure_rows[index]
        assert request.prompt_tokens == int(row["ContextTokens"])
        assert request.output_tokens == int(row["GeneratedTokens"])


def test_azure_uses_only_llms_with_zipf_skew(azure: Workload) -> None:
    assert set(azure.models()) == set(llm_ids(MODELS))
    counts = Counter(r.model for r in azure.requests)
    assert counts.most_common(1)[0][1] > 2 * len(azure.requests) / len(counts)


def test_azure_sessions_are_sticky(azure: Workload) -> None:
    models = [r.model for r in azure.requests]
    shares = [n / len(models) for n in Counter(models).values()]
    repeats = sum(a == b for a, b in itertools.pairwise(models)) / (len(models) - 1)
    assert repeats > sum(p * p for p in shares) + 0.005  # i.i.d. draws would repeat at Σp²
    one_session = [r.model for r in azure_trace(MODELS, limit=2000, sessions=1).requests]
    runs = 1 + sum(a != b for a, b in itertools.pairwise(one_session))
    assert len(one_session) / runs > 6  # mean session: 10 requests


def test_azure_speed_and_limit_scale_and_cut_the_trace(azure: Workload) -> None:
    fast = azure_trace(MODELS, limit=100, speed=2.0)
    assert len(fast.requests) == 100
    assert fast.requests[-1].time == pytest.approx(azure.requests[99].time / 2)


def test_the_azure_trace_ships_inside_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(AZURE_ENV, raising=False)
    shipped = default_azure_path()
    assert shipped.is_relative_to(Path(modelpool.__file__).parent)
    assert "CC-BY 4.0" in (shipped.parent / "README.md").read_text()


def test_a_missing_azure_trace_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A variable that names no file is said as such, though the shipped copy is there.
    monkeypatch.setenv(AZURE_ENV, str(tmp_path / "gone.csv"))
    with pytest.raises(FileNotFoundError, match=r"MODELPOOL_AZURE_TRACE names .*gone\.csv"):
        default_azure_path()
    with pytest.raises(FileNotFoundError):
        azure_trace(MODELS, tmp_path / "missing.csv")


def test_the_azure_env_variable_names_the_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = write(
        tmp_path, "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,5,6\n"
    )
    monkeypatch.setenv(AZURE_ENV, str(trace))
    assert default_azure_path() == trace
    assert azure_trace(MODELS).requests[0].prompt_tokens == 5


# --- any CSV ---------------------------------------------------------------------------


def write(folder: Path, text: str, name: str = "trace.csv") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_csv_seconds_are_made_relative_and_sorted(tmp_path: Path) -> None:
    workload = load_csv(write(tmp_path, "time,model\n15.5,a\n12,b\n\n20,a\n"))
    assert [(r.time, r.model) for r in workload.requests] == [(0, "b"), (3.5, "a"), (8, "a")]
    assert workload.name == "trace"


def test_csv_iso_timestamps_with_many_fractional_digits(tmp_path: Path) -> None:
    text = "Timestamp,Model_ID\n2023-11-16 18:15:47.1805900,a\n2023-11-16T18:15:46.6805900,b\n"
    workload = load_csv(write(tmp_path, text))
    assert [r.model for r in workload.requests] == ["b", "a"]
    assert workload.requests[1].time == pytest.approx(0.5)


def test_csv_finds_token_and_service_columns_by_their_common_names(tmp_path: Path) -> None:
    text = "Arrival,Name,Input_Tokens,completion-tokens,Latency\n0,a,10,20,1.5\n1,b,30,40,\n"
    first, second = load_csv(write(tmp_path, text)).requests
    assert first == Request(0.0, "a", 10, 20, 1.5)
    assert second == Request(1.0, "b", 30, 40, None)


def test_csv_columns_can_be_named(tmp_path: Path) -> None:
    path = write(tmp_path, "arrived,who,busy\n3,a,2\n")
    workload = load_csv(path, time_column="ARRIVED", model_column="who", service_column="busy")
    assert workload.requests == (Request(0.0, "a", 0, 0, 2.0),)
    with pytest.raises(ValueError, match="no column 'when'; the columns are: arrived, who, busy"):
        load_csv(path, time_column="when", model_column="who")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("time,model\n", "no rows"),
        ("when,model\n1,a\n", r"no time column .*the columns are: when, model"),
        ("time,what\n1,a\n", r"no model column .*the columns are: time, what"),
        ("time,model\n1,a\n\n2,b\nsoon,c\n", r"trace\.csv:5: time 'soon' is not a number"),
        ("time,model,prompt_tokens\n1,a,1\n2,b,-4\n", r"trace\.csv:3: prompt_tokens '-4'"),
        ("time,model,service\n1,a,x\n", r"trace\.csv:2: service 'x' is not a number"),
        ("time,model\n1,a\n2\n", r"trace\.csv:3: 1 fields, the header has 2"),
        ("time,model\n1, \n", r"trace\.csv:2: the model cell"),
        ("time,model\nnoon,a\n", r"trace\.csv:2: time 'noon' is neither"),
    ],
)
def test_bad_csv_input_names_the_file_line_and_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        load_csv(write(tmp_path, text))


# --- make_workload ---------------------------------------------------------------------


def test_make_workload_runs_a_generator_with_its_sizes() -> None:
    made = make_workload("zipf", MODELS, seed=3, requests=100, duration=60)
    assert made.requests == zipf_drift(MODELS, requests=100, duration=60, seed=3).requests
    assert len(made.requests) == 100
    assert made.requests[-1].time < 60
    assert len(make_workload("bursty", MODELS).requests) == 3600


def test_make_workload_azure_takes_the_trace_and_cuts_it() -> None:
    made = make_workload("azure", MODELS, requests=50, trace=default_azure_path())
    assert len(made.requests) == 50
    assert make_workload("azure", MODELS, duration=10).requests[-1].time < 10


def test_make_workload_reads_csv_files_and_checks_their_models(tmp_path: Path) -> None:
    good = write(tmp_path, "time,model\n0,bge-m3\n1,sdxl-base\n2,bge-m3\n", "good.csv")
    assert len(make_workload(str(good), MODELS).requests) == 3
    assert len(make_workload("csv", MODELS, trace=good, requests=2).requests) == 2
    bad = write(tmp_path, "time,model\n0,bge-m3\n1,gpt-9\n", "bad.csv")
    with pytest.raises(ValueError, match=r"not in the set 'demo': gpt-9; the set has: llama"):
        make_workload("csv", MODELS, trace=bad)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: make_workload("uniform", MODELS), "unknown workload 'uniform'.*zipf, bursty"),
        (lambda: make_workload("csv", MODELS), "needs a file"),
        (lambda: make_workload("zipf", MODELS, trace="x.csv"), "synthetic"),
    ],
)
def test_make_workload_refuses_what_it_cannot_make(
    call: Callable[[], Workload], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_fragmentation_keeps_small_models_busy_and_large_ones_in_turns() -> None:
    from modelpool.sim.models import box_model_set
    from modelpool.sim.workloads import fragmentation

    box = box_model_set()
    workload = fragmentation(box, requests=3000, seed=1, large_at_once=3, turn_every=300.0)
    small = {m.id for m in box.models if m.bytes < 8e9}
    spread = {m.id for m in box.models if m.devices is not None}
    asked = [r.model for r in workload.requests]
    assert 0.65 < sum(m in small for m in asked) / len(asked) < 0.75
    assert not spread & set(asked)  # holes are per device: spread models get none
    for turn in range(12):
        in_turn = {r.model for r in workload.requests
                   if turn * 300 <= r.time < (turn + 1) * 300 and r.model not in small}  # fmt: skip
        assert len(in_turn) <= 3, (turn, in_turn)
