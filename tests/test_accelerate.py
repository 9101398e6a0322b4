"""DeepM3's loops over events (``model.implementation``, :data:`deepm3.models.loops.LOOPS`)
equal the eager reference, in outputs and every parameter gradient. The static loops' bucket
padding and compiled step run on the CPU (1e-5); the CUDA graphs need a GPU (1e-4 in float32)
and skip without one (``benchmarks/gpu.sh`` runs them)."""

import copy
import dataclasses
import json

import pytest
import torch

from deepm3.config import config_from_dict, load_config
from deepm3.errors import ConfigError
from deepm3.models import accelerated, build_model, model_options
from deepm3.models.accelerated import bucket, event_step
from deepm3.models.deepm3 import DeepM3
from deepm3.models.loops import LOOPS
from deepm3.ode.field import first_layer_columns
from deepm3.ode.solvers import METHODS, Method, fixed_step_methods
from deepm3.train.run import plan_run

NUM_ITEMS = 40
STATIC = [name for name, loop in LOOPS.items() if loop.static]
needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU; none is available"
)


def batch(size: int, length: int, seed: int = 0, device: str = "cpu"):
    """Left-padded histories with ties (zero gaps) and one step at which every gap is zero."""
    generator = torch.Generator().manual_seed(seed)
    items = torch.randint(1, NUM_ITEMS + 1, (size, length), generator=generator)
    seconds = torch.randint(0, 3 * 86_400, (size, length), generator=generator)
    seconds[torch.rand(size, length, generator=generator) < 0.5] = 0
    seconds[:, length // 2] = 0
    timestamps = 10**9 + seconds.cumsum(1)
    lengths = torch.randint(1, length + 1, (size,), generator=generator)
    pad = torch.arange(length)[None] < (length - lengths)[:, None]
    items[pad], timestamps[pad], seconds[pad] = 0, 0, 0
    gaps = torch.log1p(seconds.double() / 3600).float()
    next_gaps = torch.rand(size, length, generator=generator)
    return [tensor.to(device) for tensor in (items, timestamps, gaps, next_gaps)]


def deepm3(size: int = 16, width: int = 12, buckets=None, **overrides):
    """A seeded DeepM3 (the same parameters at every call with the same sizes); ``buckets``:
    its static loops' (batch, length) buckets."""
    torch.manual_seed(0)
    values = {"hidden_size": size, "field_width": width, "dropout": 0.0, "steps": 2, **overrides}
    options = model_options("deepm3", values)
    if buckets is None:
        return build_model("deepm3", NUM_ITEMS, options, 8)
    return DeepM3(NUM_ITEMS, options, 8, *buckets)


@pytest.fixture
def uncompiled(monkeypatch):
    """The compile loop with its step left uncompiled: the static loop's padding alone (what a
    CUDA graph runs, without the capture), in a fraction of the time."""
    monkeypatch.setattr(accelerated, "compiled_step", lambda: event_step)


def run(model, inputs):
    """States, every parameter gradient (of a fixed random projection of the states) and NFE."""
    states, aux = model(*inputs)
    weights = torch.randn(states.shape, generator=torch.Generator().manual_seed(1))
    model.zero_grad(set_to_none=True)
    (states * weights.to(states.device)).sum().backward()
    gradients = {name: p.grad.clone() for name, p in model.named_parameters()}
    return states.detach(), gradients, aux["nfe"]


def assert_close(reference, result, tolerance: float) -> None:
    """Relative (to the largest entry) error of the states and of every gradient."""
    scale = reference[0].abs().max()
    assert float((result[0] - reference[0]).abs().max() / scale) < tolerance
    for name, gradient in reference[1].items():
        error = (result[1][name] - gradient).abs().max() / gradient.abs().max().clamp_min(1e-12)
        assert float(error) < tolerance, (name, float(error))


def test_bucket_is_the_smallest_that_holds_the_size():
    assert [bucket(size, (1, 2, 4, 8)) for size in (1, 3, 4, 5, 8)] == [1, 4, 4, 8, 8]
    assert bucket(9, (1, 2, 4, 8)) == 9  # beyond the largest: its own size
    assert bucket(7, ()) == 7


@pytest.mark.parametrize("solver", fixed_step_methods())
@pytest.mark.parametrize("lipschitz", ["spectral", "bounded"])
@pytest.mark.parametrize("predict_at", ["last_event", "target_time"])
def test_padding_to_buckets_changes_nothing(uncompiled, solver, lipschitz, predict_at):
    # 5 rows padded to 8, 7 steps to 12, every step taken (the zero-gap skip off), against the
    # eager reference loop
    options = {"solver": solver, "lipschitz": lipschitz, "predict_at": predict_at}
    inputs = batch(5, 7)
    eager = run(deepm3(implementation="eager", **options), inputs)
    padded = run(deepm3(implementation="compile", buckets=((8,), (12,)), **options), inputs)
    assert_close(eager, padded, 1e-5)
    per_step = 2 * METHODS[solver].evaluations_per_step
    assert padded[2] == 12 * per_step + (per_step if predict_at == "target_time" else 0)


def test_a_plain_gru_pads_too(uncompiled):
    inputs = batch(3, 6)
    eager = run(deepm3(ode="none", implementation="eager"), inputs)
    padded = deepm3(ode="none", implementation="compile", buckets=((4,), (8,)))
    assert_close(eager, run(padded, inputs), 1e-5)


def test_a_model_sharing_a_static_loop_steps_with_its_own_solver(uncompiled):
    # the recommender re-solves the same weights with another solver: a shallow copy with other
    # options, sharing the model's static loops (made for the first solver)
    inputs = batch(4, 6)
    model = deepm3(implementation="compile", solver="euler")
    run(model, inputs)
    twin = copy.copy(model)
    twin.options = dataclasses.replace(model.options, solver="rk4")
    expected = run(deepm3(implementation="eager", solver="rk4"), inputs)
    assert_close(expected, run(twin, inputs), 1e-5)


@pytest.mark.parametrize("implementation", [name for name in LOOPS if not LOOPS[name].needs_cuda])
def test_every_loop_the_setting_names_equals_the_eager_loop(implementation):
    # tiny sizes: one compilation of the step (forward and backward), seconds on a CPU
    inputs = batch(5, 6)
    eager = run(deepm3(implementation="eager"), inputs)
    model = deepm3(implementation=implementation)
    assert_close(eager, run(model, inputs), 1e-5)
    assert_close(eager, run(model, inputs), 1e-5)  # a static loop (its compiled step) reused


@pytest.mark.parametrize("solver", fixed_step_methods())
def test_the_step_compiles_as_one_graph(solver):
    # a graph break would leave part of every step uncompiled (the loop does not insist on one
    # graph, so that too many recompilations fall back to eager instead of failing)
    field = deepm3().field.weights()
    w_h, w_elapsed, _ = first_layer_columns(field)
    size, width = w_h.shape[1], w_h.shape[0]
    args = (torch.randn(4, size), torch.randn(4, 3 * size), torch.rand(4), torch.randn(4, width))
    keep = torch.tensor([[True], [False], [True], [True]])
    weights = torch.randn(3 * size, size), torch.randn(3 * size)
    explanation = torch._dynamo.explain(event_step)(
        *args, keep, *weights, (field, w_h, w_elapsed), solver, 2
    )
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1


@pytest.mark.slow
@pytest.mark.parametrize("predict_at", ["last_event", "target_time"])
def test_compiled_rk4_step_equals_the_eager_loop_in_training_and_inference(predict_at):
    inputs = batch(5, 8, seed=1)
    options = {"solver": "rk4", "predict_at": predict_at, "lipschitz": "none"}
    eager_model = deepm3(implementation="eager", **options)
    compiled = deepm3(implementation="compile", buckets=((8,), ()), **options)
    assert_close(run(eager_model, inputs), run(compiled, inputs), 1e-5)
    with torch.no_grad():
        expected, _ = eager_model.eval()(*inputs)
        states, _ = compiled.eval()(*inputs)
    assert float((states - expected).abs().max() / expected.abs().max()) < 1e-5


@pytest.mark.parametrize("implementation", STATIC)
def test_static_loops_refuse_adaptive_solvers_as_the_solver_table_says(monkeypatch, implementation):
    with pytest.raises(ConfigError, match="adaptive solver dopri5.*solver=euler or rk4"):
        deepm3(implementation=implementation, solver="dopri5")
    # the table decides, not a list of names: an adaptive method added to it is refused, and a
    # fixed-step one accepted and offered
    monkeypatch.setitem(METHODS, "bosh3", Method(None))
    monkeypatch.setitem(METHODS, "midpoint", Method(METHODS["euler"].step, 1))
    with pytest.raises(ConfigError, match="adaptive solver bosh3.*euler or rk4 or midpoint"):
        deepm3(implementation=implementation, solver="bosh3")
    assert deepm3(implementation=implementation, solver="midpoint").options.solver == "midpoint"
    assert deepm3(implementation="fast", solver="bosh3").options.solver == "bosh3"


def test_unknown_loops_and_models_without_one_are_refused():
    with pytest.raises(ConfigError, match="fast, eager, compile, cuda_graph, compiled_cuda_graph"):
        deepm3(implementation="graphs")
    with pytest.raises(ConfigError, match="unknown key.*implementation in model \\(sasrec\\)"):
        model_options("sasrec", {"implementation": "compile"})


def test_cuda_graphs_need_a_cuda_device():
    with pytest.raises(ValueError, match="needs a CUDA device, not cpu"):
        deepm3(implementation="cuda_graph")(*batch(2, 4))


@needs_cuda
@pytest.mark.parametrize(
    ("mode", "solver", "predict_at"),
    [
        ("cuda_graph", "euler", "last_event"),
        ("cuda_graph", "euler", "target_time"),
        ("cuda_graph", "rk4", "last_event"),
        ("cuda_graph", "rk4", "target_time"),
        ("compiled_cuda_graph", "euler", "last_event"),  # two compilations each
        ("compiled_cuda_graph", "rk4", "target_time"),
    ],
)
def test_cuda_graphs_equal_the_eager_loop(mode, solver, predict_at):
    # a training step and a replay after the parameters moved, then inference; 5 rows padded
    # to a bucket of 8
    options = {"solver": solver, "predict_at": predict_at}
    eager_model = deepm3(implementation="eager", **options).cuda()
    graphed = deepm3(implementation=mode, **options).cuda()
    for seed in (0, 1):
        inputs = batch(5, 30, seed=seed, device="cuda")
        assert_close(run(eager_model, inputs), run(graphed, inputs), 1e-4)
        with torch.no_grad():  # the same update of both models' parameters
            for mine, theirs in zip(eager_model.parameters(), graphed.parameters(), strict=True):
                mine.sub_(0.1 * mine.grad)
                theirs.sub_(0.1 * theirs.grad)
    with torch.no_grad():
        expected, _ = eager_model.eval()(*inputs)
        states, _ = graphed.eval()(*inputs)
        assert float((states - expected).abs().max() / expected.abs().max()) < 1e-4
        graphed(*batch(5, 30, seed=2, device="cuda"))  # a replay must not change what was returned
        assert float((states - expected).abs().max() / expected.abs().max()) < 1e-4


@needs_cuda
def test_the_fused_recurrence_can_be_captured_in_a_cuda_graph():
    # the data-dependent skip of ode_rnn is off under capture: a replay on new data is exact
    model = deepm3().cuda().eval()
    first, second = batch(4, 20, device="cuda"), batch(4, 20, seed=1, device="cuda")
    static = [tensor.clone() for tensor in first]
    with torch.no_grad():
        side = torch.cuda.Stream()  # warm-up (and the cached spectral normalisation) outside
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            model(*static)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured, _ = model(*static)
        for buffer, value in zip(static, second, strict=True):
            buffer.copy_(value)
        graph.replay()
        expected, _ = model(*second)
    assert float((captured - expected).abs().max() / expected.abs().max()) < 1e-5


# --------------------------------------------------------------------------------------------
# The one setting in a run: checked before any data is read; train.accelerate, which chose the
# static loop before, is read as model.implementation (command lines and stored runs alike)


@pytest.mark.parametrize(
    ("model", "settings", "phrase"),
    [
        ("sasrec", ["accelerate=compile"], "implementation in model \\(sasrec\\)"),
        ("deepm3", ["implementation=compile", "solver=dopri5"], "adaptive solver dopri5"),
        ("deepm3", ["accelerate=compile", "solver=dopri5"], "adaptive solver dopri5"),
        ("deepm3", ["implementation=cuda_graph", "device=cpu"], "needs a CUDA device"),
        ("deepm3", ["train.accelerate=cuda_graph", "device=cpu"], "needs a CUDA device"),
        ("deepm3", ["accelerate=graphs"], "train.accelerate must be one of"),
        ("deepm3", ["implementation=graphs"], "model.implementation must be one of"),
    ],
)
def test_the_loop_is_checked_before_any_data_is_read(model, settings, phrase):
    with pytest.raises(ConfigError, match=phrase):
        plan_run(model, load_config(None, settings))


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ([], "fast"),
        (["accelerate=none"], "fast"),
        (["implementation=eager", "accelerate=none"], "eager"),
        (["accelerate=compile"], "compile"),
        (["implementation=eager", "train.accelerate=compiled_cuda_graph"], "compiled_cuda_graph"),
    ],
)
def test_train_accelerate_is_read_as_the_loop_setting(settings, expected):
    config = load_config(None, [*settings, "device=cpu"])
    assert "accelerate" not in config.to_dict()["train"]
    assert model_options("deepm3", config.model).implementation == expected


def test_a_stored_run_with_train_accelerate_loads_with_that_loop():
    stored = plan_run("deepm3", load_config(None, ["device=cpu"])).config.to_dict()
    assert stored["model"]["implementation"] == "fast" and "accelerate" not in stored["train"]
    for mode, loop in (("none", "fast"), ("compile", "compile")):
        saved = copy.deepcopy(stored)
        saved["train"]["accelerate"] = mode
        config = config_from_dict(saved, "run/config.json")
        assert config.model["implementation"] == loop
        assert dataclasses.asdict(config.train) == stored["train"]
    saved["train"]["accelerate"] = "graphs"
    with pytest.raises(ConfigError, match="run/config.json: train.accelerate must be one of"):
        config_from_dict(saved, "run/config.json")


def test_train_accelerate_trains_and_evaluates_through_the_accelerated_step(
    tmp_path, monkeypatch, request
):
    """train.accelerate=compile puts the bucketed per-event step into training and evaluation:
    the step runs (counted, with and without gradients) and the run's losses and metrics equal
    the eager run's. torch.compile is replaced by a counting wrapper of the uncompiled step
    (compiling takes minutes on a CPU; the compiled step itself is compared above)."""
    from synthetic import write_synthetic_csv

    from deepm3.config import load_config
    from deepm3.train.run import run

    calls = {True: 0, False: 0}  # grad enabled -> steps taken

    def counting_compile(function, **options):
        def counted(*args, **kwargs):
            calls[torch.is_grad_enabled()] += 1
            return function(*args, **kwargs)

        return counted

    monkeypatch.setattr(torch, "compile", counting_compile)
    accelerated.compiled_step.cache_clear()  # made once per process: make it with the spy
    request.addfinalizer(accelerated.compiled_step.cache_clear)  # and never leave the spy
    csv = write_synthetic_csv(tmp_path / "events.csv", num_users=20)
    small = ["hidden_size=8", "max_len=8", "batch_size=8", "progress=false", "num_threads=1"]
    results, losses = {}, {}
    for mode in ("none", "compile"):
        settings = [*small, "epochs=2", "dropout=0", "lr=0.01", f"accelerate={mode}"]
        config = load_config(None, settings, base={"data": {"dataset": str(csv)}})
        if mode == "compile":
            assert calls == {True: 0, False: 0}  # the eager run never reached the step
        results[mode] = run("deepm3", config, tmp_path / mode)
        log = (tmp_path / mode / "log.jsonl").read_text().splitlines()
        losses[mode] = [json.loads(line)["loss"] for line in log]
    assert calls[True] > 0 and calls[False] > 0  # training and evaluation both stepped
    assert losses["compile"] == pytest.approx(losses["none"], rel=1e-5)
    for role in ("valid", "test"):
        assert results["compile"][role] == pytest.approx(results["none"][role], abs=1e-5)


@pytest.mark.slow
def test_training_with_the_compiled_step_matches_the_fused_loop(tmp_path):
    """One epoch with implementation=compile: the same loss and validation as with fast."""
    from synthetic import write_synthetic_csv

    from deepm3.train.run import run as train_run

    csv = write_synthetic_csv(tmp_path / "events.csv", num_users=20)
    small = ["hidden_size=8", "max_len=8", "batch_size=8", "progress=false", "num_threads=1"]
    results = {}
    for loop in ("fast", "compile"):
        settings = [*small, "epochs=1", "dropout=0", f"implementation={loop}"]
        config = load_config(None, settings, base={"data": {"dataset": str(csv)}})
        results[loop] = train_run("deepm3", config, tmp_path / loop)["test"]["ndcg@10"]
    assert results["compile"] == pytest.approx(results["fast"], abs=1e-5)
