"""Workloads read from files: the Azure LLM inference trace, and any CSV of requests.

The Azure trace keeps its real arrival times and token counts but names no model, so
``azure_trace`` maps its requests onto a model set by a seeded session rule (below).
``load_csv`` reads a CSV that names the model of each request itself.

Errors say which file, which line and what was wrong, because a trace is usually
someone's export and the first run on it is the one that finds its quirks.
"""

from __future__ import annotations

import csv
import gzip
import math
import os
import random
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from modelpool.sim.models import ModelSet
from modelpool.sim.workload import Request, Workload

__all__ = [
    "NON_LLM_TAGS",
    "llm_ids",
    "zipf_weights",
    "default_azure_path",
    "azure_trace",
    "load_csv",
]

NON_LLM_TAGS = ("embedding", "image", "speech")
"""Tags of models that generate no tokens: their time per request is fixed."""

AZURE_FILE = "AzureLLMInferenceTrace_conv.csv"
AZURE_SHIPPED = AZURE_FILE + ".gz"
AZURE_ENV = "MODELPOOL_AZURE_TRACE"

# Header names that auto-detection accepts, compared after ``_normal`` (lower case,
# no "_", "-" or spaces), so "ContextTokens" and "context_tokens" are the same column.
TIME_NAMES = ("time", "timestamp", "arrival", "arrivaltime", "t")
MODEL_NAMES = ("model", "modelid", "name")
SERVICE_NAMES = ("service", "serviceseconds", "duration", "latency")
PROMPT_NAMES = ("prompttokens", "inputtokens", "contexttokens")
OUTPUT_NAMES = ("outputtokens", "generatedtokens", "completiontokens")


def llm_ids(models: ModelSet) -> list[str]:
    """The ids of the models that generate tokens (none of ``NON_LLM_TAGS``), in set order."""
    return [m.id for m in models.models if not set(m.tags) & set(NON_LLM_TAGS)]


def zipf_weights(n: int, exponent: float) -> list[float]:
    """Weights of ranks 1..n under Zipf's law: rank r gets 1 / r**exponent."""
    return [1.0 / rank**exponent for rank in range(1, n + 1)]


# --- the Azure trace -------------------------------------------------------------------


def default_azure_path() -> Path:
    """Where the Azure trace is: ``$MODELPOOL_AZURE_TRACE`` (which must exist when set),
    else the copy shipped inside this package (gzip-compressed; see ``sim/data/README.md``
    for its license and attribution)."""
    env = os.environ.get(AZURE_ENV)
    if env:
        if Path(env).is_file():
            return Path(env)
        # Said on purpose, not passed over: the shipped copy would hide the mistake.
        raise FileNotFoundError(f"${AZURE_ENV} names {env}, which is not a file")
    shipped = Path(__file__).resolve().parent / "data" / AZURE_SHIPPED
    if not shipped.is_file():  # only if the package was installed without its data
        raise FileNotFoundError(
            f"the Azure LLM inference trace is not installed at {shipped}. Set "
            f"${AZURE_ENV}, or give another file with --trace FILE"
        )
    return shipped


def azure_trace(
    models: ModelSet,
    path: str | Path | None = None,
    *,
    seed: int = 0,
    sessions: int = 32,
    mean_session_requests: float = 10.0,
    exponent: float = 1.1,
    limit: int | None = None,
    speed: float = 1.0,
    sample: float = 1.0,
) -> Workload:
    """The Azure conversation trace with each request mapped onto an LLM of ``models``.

    Times are seconds from the first request divided by ``speed``; prompt and output
    tokens are the trace's ContextTokens and GeneratedTokens; ``limit`` keeps the first
    requests only. ``sample`` keeps each request with that probability (seeded), for
    a box that sees a share of the service's traffic: the trace is a whole production
    service, 5.4 requests a second, more than one GPU serves.

    The mapping rule (seeded by ``seed``): the LLMs of the set (``llm_ids``) are ranked
    in an order shuffled once, and a session draws its model from Zipf weights
    (``exponent``) over that ranking. ``sessions`` sessions are open at once; each
    request goes to one of them chosen uniformly and takes its model. A session lasts a
    geometric number of requests (mean ``mean_session_requests``), then is replaced by a
    fresh one with a fresh draw. So popularity is skewed and requests close in time
    often share a model, as conversations do, while the real arrivals are kept.
    """
    if sessions < 1 or mean_session_requests < 1 or speed <= 0 or not 0 < sample <= 1:
        raise ValueError(
            "azure_trace: need sessions >= 1, mean_session_requests >= 1, speed > 0, "
            "0 < sample <= 1"
        )
    source = Path(path) if path is not None else default_azure_path()
    rows = list(_rows(source))
    columns = _columns(source, rows)
    t_col = _required(source, columns, None, ("TIMESTAMP",), "time")
    p_col = _required(source, columns, None, ("ContextTokens",), "prompt tokens")
    o_col = _required(source, columns, None, ("GeneratedTokens",), "output tokens")
    parsed = [
        (
            _timestamp(source, line, row[t_col]),
            _count(source, line, "ContextTokens", row[p_col]),
            _count(source, line, "GeneratedTokens", row[o_col]),
        )
        for line, row in _records(source, rows, len(columns))
    ]
    parsed = sorted(parsed, key=lambda item: item[0])[:limit]
    if not parsed:
        raise ValueError(f"{source}: no requests in the trace")
    llms = llm_ids(models)
    if not llms:
        raise ValueError(f"model set {models.name!r} has no LLM to map the Azure trace onto")

    rng = random.Random(seed)
    if sample < 1:
        parsed = [item for item in parsed if rng.random() < sample]
    ranking = list(llms)
    rng.shuffle(ranking)
    weights = zipf_weights(len(ranking), exponent)

    session_model = [rng.choices(ranking, weights)[0] for _ in range(sessions)]
    session_left = [_geometric(rng, mean_session_requests) for _ in range(sessions)]
    start = parsed[0][0]
    requests = []
    for time, prompt, output in parsed:
        slot = rng.randrange(sessions)
        requests.append(Request((time - start) / speed, session_model[slot], prompt, output))
        session_left[slot] -= 1
        if session_left[slot] == 0:
            session_model[slot] = rng.choices(ranking, weights)[0]
            session_left[slot] = _geometric(rng, mean_session_requests)
    sampled = f" (sampled {sample:.3g})" if sample < 1 else ""
    return Workload(
        name="azure",
        requests=tuple(requests),
        description=(
            f"Azure LLM inference trace (conversation, 2023; CC-BY 4.0), {len(requests)} "
            f"requests{sampled} mapped onto {len(ranking)} LLMs by {sessions} sticky Zipf sessions"
        ),
        params=dict(
            path=str(source),
            seed=seed,
            sessions=sessions,
            exponent=exponent,
            mean_session_requests=mean_session_requests,
            limit=limit,
            speed=speed,
            sample=sample,
        ),
    )


def _geometric(rng: random.Random, mean: float) -> int:
    """A geometric count on 1, 2, ... with the given mean (inverse transform)."""
    if mean <= 1:
        return 1
    return 1 + int(math.log(1.0 - rng.random()) / math.log(1.0 - 1.0 / mean))


# --- any CSV ---------------------------------------------------------------------------


def load_csv(
    path: str | Path,
    *,
    time_column: str | None = None,
    model_column: str | None = None,
    service_column: str | None = None,
    prompt_column: str | None = None,
    output_column: str | None = None,
) -> Workload:
    """Requests from a CSV with a header line; columns matched without regard to case.

    Needs a time column (seconds as numbers, or ISO timestamps; a timestamp without a
    zone is read as UTC) and a model column; service seconds and prompt/output token
    columns are optional (an empty cell: no service given, or 0 tokens). A column not
    named is looked for under its common names (``TIME_NAMES`` and the like). Times are
    made relative to the earliest and the rows sorted by time. Model ids are not checked
    against any model set here: the caller knows which set it runs.
    """
    source = Path(path)
    rows = list(_rows(source))
    columns = _columns(source, rows)
    t_col = _required(source, columns, time_column, TIME_NAMES, "time")
    m_col = _required(source, columns, model_column, MODEL_NAMES, "model")
    s_col = _optional(source, columns, service_column, SERVICE_NAMES)
    p_col = _optional(source, columns, prompt_column, PROMPT_NAMES)
    o_col = _optional(source, columns, output_column, OUTPUT_NAMES)

    numeric: bool | None = None
    parsed: list[tuple[float, str, int, int, float | None]] = []
    for line, row in _records(source, rows, len(columns)):
        cell = row[t_col].strip()
        if numeric is None:
            numeric = _is_number(cell)
        time = (
            _number(source, line, columns[t_col], cell)
            if numeric
            else _timestamp(source, line, cell)
        )
        model = row[m_col].strip()
        if not model:
            raise ValueError(f"{source}:{line}: the model cell ({columns[m_col]}) is empty")
        service = None
        if s_col is not None and row[s_col].strip():
            service = _number(source, line, columns[s_col], row[s_col])
            if service < 0:
                raise ValueError(f"{source}:{line}: {columns[s_col]} is negative: {service}")
        prompt = _count(source, line, columns[p_col], row[p_col]) if p_col is not None else 0
        output = _count(source, line, columns[o_col], row[o_col]) if o_col is not None else 0
        parsed.append((time, model, prompt, output, service))
    if not parsed:
        raise ValueError(f"{source}: no rows after the header line")
    parsed.sort(key=lambda item: item[0])
    start = parsed[0][0]
    return Workload(
        name=source.stem,
        requests=tuple(Request(t - start, m, p, o, s) for t, m, p, o, s in parsed),
        description=f"{source.name}: {len(parsed)} requests read from a CSV",
        params={
            "path": str(source),
            "columns": {
                "time": columns[t_col],
                "model": columns[m_col],
                "service": columns[s_col] if s_col is not None else None,
                "prompt_tokens": columns[p_col] if p_col is not None else None,
                "output_tokens": columns[o_col] if o_col is not None else None,
            },
        },
    )


# --- reading helpers -------------------------------------------------------------------


def _rows(source: Path) -> Iterator[tuple[int, list[str]]]:
    """Each non-blank row with the line it starts on. A missing file stays
    FileNotFoundError; a file that cannot be read or decoded is a ValueError."""
    try:
        with _open_text(source) as file:
            reader = csv.reader(file)
            line = 1
            for row in reader:
                if len(row) > 1 or (row and row[0].strip()):
                    yield line, row
                line = reader.line_num + 1
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"{source}: cannot read: {error}") from error


def _open_text(source: Path) -> TextIO:
    """``source`` as text for ``csv``; a ``.gz`` file is decompressed as it is read."""
    if source.suffix == ".gz":
        return gzip.open(source, "rt", newline="", encoding="utf-8-sig")
    return source.open(newline="", encoding="utf-8-sig")


def _columns(source: Path, rows: Sequence[tuple[int, list[str]]]) -> list[str]:
    if not rows:
        raise ValueError(f"{source}: the file is empty; expected a header line, then rows")
    return [name.strip() for name in rows[0][1]]


def _records(
    source: Path, rows: Sequence[tuple[int, list[str]]], width: int
) -> Iterator[tuple[int, list[str]]]:
    for line, row in rows[1:]:
        if len(row) < width:
            raise ValueError(f"{source}:{line}: {len(row)} fields, the header has {width}")
        yield line, row


def _normal(name: str) -> str:
    return name.strip().lower().replace("_", "").replace("-", "").replace(" ", "")


def _optional(
    source: Path, columns: list[str], given: str | None, names: tuple[str, ...]
) -> int | None:
    """The index of the column ``given`` (which must be there), else of the first of
    ``names`` present, else None."""
    normal = [_normal(c) for c in columns]
    for name in (given,) if given is not None else names:
        if _normal(name) in normal:
            return normal.index(_normal(name))
    if given is not None:
        raise ValueError(f"{source}: no column {given!r}; the columns are: {', '.join(columns)}")
    return None


def _required(
    source: Path, columns: list[str], given: str | None, names: tuple[str, ...], what: str
) -> int:
    index = _optional(source, columns, given, names)
    if index is None:
        raise ValueError(
            f"{source}: no {what} column (looked for {', '.join(names)}); "
            f"the columns are: {', '.join(columns)}"
        )
    return index


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _number(source: Path, line: int, column: str, cell: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise ValueError(f"{source}:{line}: {column} {cell.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{source}:{line}: {column} {cell.strip()!r} is not a finite number")
    return value


def _count(source: Path, line: int, column: str, cell: str) -> int:
    """A token count: empty means 0; a whole number >= 0 otherwise."""
    if cell.isdigit():  # the common case, without the checks below
        return int(cell)
    if not cell.strip():
        return 0
    value = _number(source, line, column, cell)
    if value < 0 or value != int(value):
        raise ValueError(f"{source}:{line}: {column} {cell.strip()!r} is not a count (0, 1, ...)")
    return int(value)


def _timestamp(source: Path, line: int, cell: str) -> float:
    """Seconds since the epoch of an ISO timestamp; any number of fractional digits."""
    text = cell.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{source}:{line}: time {text!r} is neither a number of seconds nor an ISO "
            "timestamp (like 2023-11-16 18:15:46.68)"
        ) from None
    if moment.tzinfo is None:
        return (moment - _NAIVE_EPOCH).total_seconds()
    return (moment - _EPOCH).total_seconds()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
