"""The startup of the simulated vLLM, in vLLM's order, with the lines vLLM logs at each step.

Order (reference.md §4.2 and the real-cpu tracebacks): the banner and non-default args; the port is
bound (taken: the OSError at once, real-cpu d); the model is found (real-cpu b/c); the config is
validated (e1/e2/a5); `VLLM::EngineCore` starts; in it the device check, the weights (most of
VLLM_GUARD_SIM_LOAD_S), profiling and the KV cache, the CUDA graphs. The first step that fails
prints vLLM's text for it and ends the startup with exit status 1.
"""

from __future__ import annotations

import socketserver
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from vllm_guard.sim import api, config, flags, reports
from vllm_guard.sim import memory as mem
from vllm_guard.sim import messages as m
from vllm_guard.sim import scenario as sc
from vllm_guard.sim.console import Console
from vllm_guard.sim.engine import EngineError, EngineProcess
from vllm_guard.sim.group import Rendezvous
from vllm_guard.sim.models import Found, find

# Hugging Face's default max_shard_size: a checkpoint of N bytes comes in about N / 5 GB shards.
SHARD_BYTES = 5 * 10**9
# How long a node waits for its group without --distributed-timeout-seconds (torch's default
# for its process groups: 10 minutes)
GROUP_TIMEOUT_S = 600.0


class Interrupted(Exception):
    """A stop signal arrived during startup."""


@dataclass(frozen=True, slots=True)
class Started:
    spec: mem.EngineSpec
    ready: mem.Ready


def served_names(args: flags.Parsed) -> list[str]:
    names = args.get("served_model_name")
    return [str(n) for n in names] if names else [str(args.get("model"))]


class Startup:
    def __init__(
        self,
        console: Console,
        scenario: sc.Scenario,
        args: flags.Parsed,
        environ: dict[str, str],
        stopped: Callable[[float], bool],
    ) -> None:
        self.console = console
        self.scenario = scenario
        self.args = args
        self.environ = environ
        self._stopped = stopped  # waits that long; True once a stop signal arrived
        self.engine: EngineProcess | None = None
        self.server: socketserver.BaseServer | None = None
        self.rendezvous: Rendezvous | None = None  # a multi-node group's meeting (sim/group.py)

    def run(self) -> Started | int:
        c, a, s = self.console, self.args, self.scenario
        model = str(a.get("model"))
        c.log("APIServer", "INFO", m.BANNER_WHERE, m.banner(s.version, model))
        c.info("APIServer", m.NON_DEFAULT_ARGS, args=repr(a.non_default))
        if a.model_option_used:
            c.log("APIServer", "WARNING", *m.MODEL_OPTION_DEPRECATED)
        try:
            # a headless node serves no API: the leader's node does (vLLM's --headless)
            self.server = (
                None if a.get("headless") else api.bind(a.get("host"), int(a.get("port")), a.get("uds"))
            )
        except OSError:
            c.emit(reports.port_in_use())
            return 1
        if self._stopped(0.05 * s.load_s):
            raise Interrupted
        token = s.token or bool(a.get("hf_token"))
        found = find(model, gated=s.gated, token=token, offline=s.offline, hub_reachable=s.hub_reachable)
        if not isinstance(found, Found):
            c.emit(reports.lookup_failure(found, model))
            return 1
        resolution = config.resolve(a, found.shape, s.gpu, self.environ)
        for level, (where, text) in resolution.notes:
            c.log("APIServer", level, where, text)
        if resolution.error is not None:
            c.emit(reports.config_failure(resolution.error, self._kwargs()))
            return 1
        assert resolution.spec is not None
        self.spec = spec = resolution.spec
        try:
            self.engine = EngineProcess.spawn(orphan=self.scenario.faults.orphan_engine, ledger=s.ledger)
        except EngineError as error:
            print(f"vllm_guard.sim: {error}", file=sys.stderr)
            return 1
        c.pids["EngineCore"] = self.engine.pid
        return self._engine_startup(spec, resolution.fp8_marlin)

    def _meet(self) -> int | None:
        """With --nnodes above 1, wait for the group's other nodes (sim/group.py); the exit
        status when they never came, None once met or alone."""
        a, c = self.args, self.console
        nnodes, rank = int(a.get("nnodes") or 1), int(a.get("node_rank") or 0)
        if nnodes < 2:
            return None
        addr, port = str(a.get("master_addr")), int(a.get("master_port"))
        if rank == 0:
            c.info("EngineCore", m.DP_GROUP_LEADER, addr=addr, world=nnodes)
        c.info("EngineCore", m.DIST_INIT, world=nnodes, rank=rank, addr=addr, port=port)
        timeout = float(a.get("distributed_timeout_seconds") or GROUP_TIMEOUT_S)
        self.rendezvous = Rendezvous(nnodes, rank, addr, port, timeout)
        why = self.rendezvous.meet(self._stopped)
        if why == "stopped":
            raise Interrupted
        if why is None:
            return None
        if self.engine is not None:
            self.engine.kill(force=True)
            self.engine = None
        c.emit(reports.group_failure(why))
        return 1

    def _kwargs(self) -> dict[str, object]:
        a = self.args
        return {
            "pipeline_parallel_size": a.get("pipeline_parallel_size"),
            "tensor_parallel_size": a.get("tensor_parallel_size"),
            "max_num_batched_tokens": a.get("max_num_batched_tokens"),
            "max_num_seqs": a.get("max_num_seqs"),
            "max_model_len": a.get("max_model_len"),
        }

    def _engine_startup(self, spec: mem.EngineSpec, fp8_marlin: bool) -> Started | int:
        c, a, s = self.console, self.args, self.scenario
        began = time.monotonic()
        c.info(
            "EngineCore",
            m.INITIALIZING_ENGINE,
            version=s.version,
            model=a.get("model"),
            trust_remote_code=bool(a.get("trust_remote_code")),
            dtype=spec.dtype,
            max_len=spec.max_model_len,
            tp=spec.tensor_parallel_size,
            pp=spec.pipeline_parallel_size,
            quantization=spec.weight_quant,
            eager=bool(a.get("enforce_eager")),
            kv_dtype=spec.kv_cache_dtype,
            served=served_names(a)[0],
            prefix=a.get("enable_prefix_caching") is not False,
        )
        if (met := self._meet()) is not None:
            return met
        overshoot = int(s.faults.graph_overshoot_gib * mem.GiB)
        budget, outcome = mem.evaluate(spec, s.gpu, s.profile_graphs, overshoot)
        if self._stopped(0.05 * s.load_s):
            raise Interrupted
        if outcome.stage == "device":
            return self._engine_failed(outcome)
        c.info("EngineCore", m.STARTING_TO_LOAD, model=a.get("model"))
        load_began = time.monotonic()
        shards = max(1, -(-budget.weights // SHARD_BYTES))
        bar = reports.Bar(reports.SHARDS_BAR, shards, reports.VLLM_BAR_FORMAT)
        self._bar(bar.update(0, 0.0))
        if outcome.stage == "load":  # the torch OOM comes out of the first shard (real-cpu e3)
            if self._stopped(0.5 * s.load_s):
                raise Interrupted
            if fp8_marlin:
                c.log("EngineCore", "WARNING", *m.FP8_MARLIN)
            return self._engine_failed(outcome)
        for shard in range(1, shards + 1):
            if self._stopped(0.5 * s.load_s / shards):
                raise Interrupted
            self._bar(bar.update(shard, time.monotonic() - load_began))
        self._bar(bar.close(time.monotonic() - load_began))
        if fp8_marlin:
            c.log("EngineCore", "WARNING", *m.FP8_MARLIN)
        loaded_s = time.monotonic() - load_began
        c.info("EngineCore", m.LOADING_WEIGHTS_TOOK, s=loaded_s)
        c.info("EngineCore", m.MODEL_LOADING_TOOK, gib=m.format_gib(budget.weights), s=loaded_s)
        if self._stopped(0.15 * s.load_s):
            raise Interrupted
        if outcome.stage == "profile":
            return self._engine_failed(outcome)
        if spec.kv_cache_memory_bytes is not None:
            c.info(
                "EngineCore",
                m.KV_BYTES_RESERVED,
                free=m.format_gib(s.gpu.capacity),
                kv=m.format_gib(spec.kv_cache_memory_bytes),
            )
        else:
            c.info("EngineCore", m.AVAILABLE_KV_MEMORY, gib=m.format_gib(budget.available_kv))
            if budget.graphs:
                self._graph_profiling_line(spec, budget)
        if outcome.stage == "kv":
            return self._engine_failed(outcome)
        ready = outcome if isinstance(outcome, mem.Ready) else None
        if ready is not None and ready.auto_fit_from is not None:
            text = m.AUTO_FIT_REDUCED if ready.max_model_len < ready.auto_fit_from else m.AUTO_FIT_FULL
            c.info(
                "EngineCore",
                text,
                old=ready.auto_fit_from,
                new=ready.max_model_len,
                gib=m.format_gib(budget.available_kv),
            )
        kv_tokens = ready.kv_tokens if ready else (budget.available_kv // budget.kv_bytes_per_token)
        max_len = ready.max_model_len if ready else spec.max_model_len
        c.info(
            "EngineCore",
            m.KV_CACHE_SIZE,
            tokens=kv_tokens,
            max_len=max_len,
            concurrency=kv_tokens / max(1, max_len),
        )
        if spec.cuda_graphs and not self._capture_graphs(spec, budget, overshoot, outcome.stage == "graphs"):
            return self._engine_failed(outcome)
        assert ready is not None
        c.info("EngineCore", m.INIT_ENGINE_TOOK, s=time.monotonic() - began)
        if self.engine is not None:
            self.engine.hold(ready.held_bytes)
        return Started(spec, ready)

    def _capture_graphs(self, spec: mem.EngineSpec, budget: mem.Budget, overshoot: int, oom: bool) -> bool:
        """The capture bars and lines; False when capture runs out of memory (`oom`)."""
        c, s = self.console, self.scenario
        sizes = len(spec.capture_sizes)
        if oom:  # the report draws the bar, up to where capture ran out of memory
            if self._stopped(0.15 * s.load_s):
                raise Interrupted
            return False
        for desc, share in ((m.CAPTURE_BAR_MIXED, 0.1), (m.CAPTURE_BAR_DECODE, 0.05)):
            began = time.monotonic()
            bar = reports.Bar(desc, sizes)
            self._bar(bar.update(0, 0.0))
            for size in range(1, sizes + 1):
                if self._stopped(share * s.load_s / sizes):
                    raise Interrupted
                self._bar(bar.update(size, time.monotonic() - began))
            self._bar(bar.close(time.monotonic() - began))
        actual = budget.graphs + overshoot
        c.info("EngineCore", m.GRAPH_CAPTURE_FINISHED, s=0.15 * s.load_s, gib=actual / mem.GiB)
        if budget.graphs_in_budget:
            c.info(
                "EngineCore",
                m.GRAPH_POOL_ACTUAL,
                actual=round(actual / mem.GiB, 2),
                estimated=round(budget.graphs / mem.GiB, 2),
                diff=round(overshoot / mem.GiB, 2),
                percent=100 * overshoot / max(actual, 1),
            )
        return True

    def _bar(self, text: str) -> None:
        """A tqdm bar's update on stderr, unless `--no-use-tqdm-on-load` turned the bars off."""
        if text and self.args.get("use_tqdm_on_load") is not False:
            self.console.write_block("err", text)

    def _graph_profiling_line(self, spec: mem.EngineSpec, budget: mem.Budget) -> None:
        util = spec.gpu_memory_utilization
        delta = budget.graphs / self.scenario.gpu.total_bytes
        suggested = min(round(util + delta, 4), 1.0)
        if budget.graphs_in_budget:
            equiv = round(util - delta, 4)
            self.console.info("EngineCore", m.GRAPH_PROFILING_ON, util=util, equiv=equiv, suggested=suggested)
        else:
            where, text = m.GRAPH_PROFILING_OFF
            self.console.log("EngineCore", "WARNING", where, text.format(util=util, suggested=suggested))

    def _engine_failed(self, outcome: mem.Outcome) -> int:
        assert not isinstance(outcome, mem.Ready)
        if self.engine is not None:  # the EngineCore raised and exits
            self.engine.kill(force=True)
            self.engine = None
        self.console.emit(reports.memory_failure(outcome, self.scenario.version))
        return 1
