"""GPU facts for preflight: NVML reads against a fake modelled on a real H100, snapshots, planned cards."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fake_nvml import (
    CUDA_DRIVER,
    DRIVER,
    H100_IDLE_FREE,
    H100_NAME,
    H100_RESERVED,
    H100_TOTAL,
    H100_UUID,
    HOLDER_BYTES,
    HOLDER_PID,
    HOLDING_FREE,
    HOLDING_USED_V1,
    FakeGpu,
    FakePynvml,
    NVMLError,
    NVMLError_LibraryNotFound,
    h100,
    h100_holding,
)

from vllm_guard.gpu import (
    CARDS,
    GpuFacts,
    GpuInfo,
    GpuProcess,
    Nvml,
    facts_from_json,
    facts_to_json,
    planned,
    process_describer,
    read_facts,
)
from vllm_guard.gpu.cards import CUDA_TOTALS
from vllm_guard.gpu.nvml import _INIT_PID_NS

# A real H100's readings (shared vllm/gpu/probe.py), copied into the repository so that this runs everywhere.
PROBE = Path(__file__).resolve().parent / "data" / "h100-probe.json"


def nobody(pid: int) -> tuple[str | None, str | None]:
    return None, None


def known(pid: int) -> tuple[str | None, str | None]:
    return "alice", f"python3 -c hold {pid}"


def read(gpus: list[FakeGpu], cvd: str | None = None, **kwargs: Any) -> GpuFacts:
    environ = {} if cvd is None else {"CUDA_VISIBLE_DEVICES": cvd}
    return read_facts(environ, FakePynvml(gpus, **kwargs), describe=nobody)


def test_the_fake_carries_the_probes_numbers() -> None:
    probe = json.loads(PROBE.read_text())
    nvml = probe["nvml"]
    assert (nvml["name"], nvml["uuid"], nvml["driver"], nvml["cuda_driver"]) == (
        H100_NAME,
        H100_UUID,
        DRIVER,
        CUDA_DRIVER,
    )
    assert nvml["mem"] == {"total": H100_TOTAL, "free": H100_IDLE_FREE, "used": H100_RESERVED}
    assert f"reserved: {H100_RESERVED} B" in nvml["mem_v2"] and "used: 0 B" in nvml["mem_v2"]
    assert probe["holding_mem"]["free"] == HOLDING_FREE
    assert probe["holding_mem"]["used"] == HOLDING_USED_V1
    assert probe["holding_procs"] == [[HOLDER_PID, HOLDER_BYTES]]


def test_an_idle_h100() -> None:
    nvml = FakePynvml([h100()])
    facts = read_facts({}, nvml, describe=nobody)
    assert facts == GpuFacts(
        devices=(
            GpuInfo(
                index=0,
                uuid=H100_UUID,
                name=H100_NAME,
                total_bytes=85520809984,
                free_bytes=85017493504,
                reserved_bytes=503316480,
                used_bytes=0,
                compute_capability=(9, 0),
                processes=(),
            ),
        ),
        driver_version="580.159.04",
        cuda_version="13.0",
        problem=None,
        source="nvml",
    )
    assert nvml.sessions == 0  # every nvmlInit was matched by an nvmlShutdown


def test_a_process_holding_memory_is_listed_with_its_owner() -> None:
    facts = read_facts({}, FakePynvml([h100_holding()]), describe=known)
    (gpu,) = facts.devices
    assert gpu.free_bytes == 64464551936
    assert gpu.used_bytes == 21056258048 - 503316480
    assert gpu.processes == (GpuProcess(456, 20543700992, "alice", "python3 -c hold 456"),)


def test_a_process_whose_memory_nvml_cannot_tell_counts_zero() -> None:
    (gpu,) = read([h100(processes=[(4242, None)])]).devices
    assert gpu.processes == (GpuProcess(4242, 0, None, None),)


def test_optional_fields_that_fail_do_not_fail_the_read() -> None:
    (gpu,) = read([h100(capability=None, processes=None)]).devices
    assert gpu.compute_capability is None
    assert gpu.processes == ()
    assert gpu.total_bytes == H100_TOTAL


def test_a_driver_without_the_v2_memory_struct_falls_back_to_v1() -> None:
    (gpu,) = read([h100()], v2=False).devices
    assert (gpu.reserved_bytes, gpu.used_bytes, gpu.free_bytes) == (0, 503316480, 85017493504)


def test_old_pynvml_returns_bytes() -> None:
    facts = read([h100()], driver=b"535.104.05", cuda_driver=12020)
    assert (facts.driver_version, facts.cuda_version) == ("535.104.05", "12.2")


@pytest.mark.parametrize(
    ("error", "problem"),
    [
        (
            NVMLError_LibraryNotFound("NVML Shared Library Not Found"),
            "no NVIDIA driver (nvidia-ml-py: NVML Shared Library Not Found)",
        ),
        (NVMLError("Driver Not Loaded"), "NVML cannot initialise: Driver Not Loaded"),
    ],
)
def test_nvml_that_does_not_initialise_is_a_problem_not_an_exception(error: NVMLError, problem: str) -> None:
    facts = read([h100()], init_error=error)
    assert facts == GpuFacts((), None, None, problem, "nvml")


def test_an_error_while_listing_devices_is_a_problem() -> None:
    class Lost(FakePynvml):
        def nvmlDeviceGetName(self, handle: FakeGpu) -> str:
            raise NVMLError("GPU is lost")

    nvml = Lost([h100()])
    facts = read_facts({}, nvml, describe=nobody)
    assert facts.devices == ()
    assert facts.problem == "NVML cannot read the GPUs: GPU is lost"
    assert facts.driver_version == DRIVER
    assert nvml.sessions == 0


def test_no_gpu_at_all() -> None:
    assert read([]).problem == "NVML sees no GPU"


def test_without_nvidia_ml_py_the_problem_says_so() -> None:
    code = (
        "import sys; sys.modules['pynvml'] = None\n"
        "from vllm_guard.gpu import read_facts\n"
        "print(read_facts({}).problem)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.startswith("nvidia-ml-py is not installed (")


def test_gpu_module_loads_neither_pynvml_nor_psutil() -> None:
    code = "import sys, vllm_guard.gpu\nprint([m for m in ('pynvml', 'psutil') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


# ---- CUDA_VISIBLE_DEVICES ----

FOUR = [h100(i) for i in range(4)]


@pytest.mark.parametrize(
    ("cvd", "indices"),
    [
        ("1,0", [1, 0]),
        ("3", [3]),
        (" 2, 0 ", [2, 0]),
        ("1,7,0", [1]),  # CUDA stops at the first entry that names no device
        ("1,-1,0", [1]),
        ("0,GPU-9e3b", [0]),  # the first entry sets the kind
        ("1gpu,2", [1, 2]),  # read like strtoul
        ("GPU-00000002,GPU-9e3b", [2, 0]),  # UUID prefixes, as CUDA allows
        (f"{H100_UUID},GPU-00000003-0254-d5ac-2a62-e2980c4d8272", [0, 3]),
        ("GPU-00000001,2", [1]),
        ("GPU-0000000,GPU-9e3b", []),  # an ambiguous prefix is not valid
    ],
)
def test_cuda_visible_devices_picks_and_orders(cvd: str, indices: list[int]) -> None:
    facts = read(FOUR, cvd)
    assert [d.index for d in facts.devices] == indices
    assert (facts.problem is None) == bool(indices)


def test_an_empty_cuda_visible_devices_hides_every_gpu() -> None:
    # What torch said on the H100 with CUDA_VISIBLE_DEVICES="" (tests/data/h100-probe2.json no_gpu_visible):
    # "RuntimeError: No CUDA GPUs are available".
    facts = read(FOUR, "")
    assert facts.devices == ()
    assert facts.problem == "CUDA_VISIBLE_DEVICES='' hides every GPU"
    assert facts.driver_version == DRIVER


def test_a_cuda_visible_devices_naming_nothing_here() -> None:
    assert (
        read([h100()], "4,5").problem == "CUDA_VISIBLE_DEVICES='4,5' names no GPU that NVML sees (it sees 1)"
    )


@pytest.mark.parametrize("cvd", ["0,1,0", "GPU-9e3b,GPU-9e3b21ec"])
def test_a_repeated_device_leaves_cuda_none(cvd: str) -> None:
    facts = read(FOUR, cvd)
    assert facts.devices == ()
    assert facts.problem is not None
    assert "twice" in facts.problem


def test_a_mig_instance_by_its_uuid() -> None:
    mig = FakeGpu(
        name=f"{H100_NAME} MIG 1g.10gb",
        uuid="MIG-1b9e6c58-1d6a-5a4b-9f1b-2f6c0a6e1f00",
        total=10 << 30,
        free=10 << 30,
        reserved=0,
        capability=None,  # answered by the parent
        mig_parent=1,
    )
    facts = read(FOUR, f"{mig.uuid},MIG-unknown", migs={mig.uuid: mig})
    (gpu,) = facts.devices
    assert (gpu.index, gpu.name, gpu.total_bytes, gpu.compute_capability) == (1, mig.name, 10 << 30, (9, 0))


# ---- Who holds a GPU ----


def test_processes_are_described_from_psutil_in_the_hosts_pid_namespace() -> None:
    user, command = process_describer(_INIT_PID_NS)(os.getpid())
    assert user == getpass.getuser()
    assert command is not None
    assert "python" in command.lower() or "pytest" in command.lower()


def test_in_another_pid_namespace_nvmls_pids_are_not_ours_to_name() -> None:
    assert process_describer("pid:[4026532999]")(os.getpid()) == (None, None)


def test_a_pid_that_is_gone_is_unknown() -> None:
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    assert process_describer(_INIT_PID_NS)(pid_max + 1) == (None, None)


# ---- Snapshots ----


def test_a_snapshot_round_trips_through_json_text(tmp_path: Path) -> None:
    facts = read_facts({}, FakePynvml([h100_holding(), h100(1, capability=None)]), describe=known)
    path = tmp_path / "gpus.json"
    path.write_text(json.dumps(facts_to_json(facts)))
    back = facts_from_json(json.loads(path.read_text()), f"snapshot {path}")
    assert back == GpuFacts(facts.devices, facts.driver_version, facts.cuda_version, None, f"snapshot {path}")


def test_a_snapshot_of_a_machine_without_gpus_keeps_the_reason() -> None:
    facts = read(FOUR, "")
    assert facts_from_json(facts_to_json(facts), "snapshot x").problem == facts.problem


def test_a_snapshot_holds_no_environment() -> None:
    data = facts_to_json(
        read_facts({"HF_TOKEN": "hf_" + "a" * 34}, FakePynvml([h100_holding()]), describe=known)
    )
    assert "hf_" not in json.dumps(data)


def _snapshot() -> dict[str, Any]:
    return facts_to_json(read_facts({}, FakePynvml([h100_holding()]), describe=known))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: d.pop("devices"), "devices: missing"),
        (lambda d: d["devices"][0].pop("total_bytes"), "devices[0].total_bytes: missing"),
        (
            lambda d: d["devices"][0].update(total_bytes="80GB"),
            "devices[0].total_bytes: Input should be a valid integer, got '80GB'",
        ),
        (
            lambda d: d["devices"][0].update(free_bytes=-1),
            "devices[0].free_bytes: Input should be greater than or equal to 0, got -1",
        ),
        (
            lambda d: d["devices"][0].update(used_bytes=True),
            "devices[0].used_bytes: Input should be a valid integer, got True",
        ),
        (
            lambda d: d["devices"][0].update(compute_capability=[9]),
            "devices[0].compute_capability[1]: missing",
        ),
        (
            lambda d: d["devices"][0]["processes"][0].update(user=7),
            "devices[0].processes[0].user: Input should be a valid string, got 7",
        ),
        (lambda d: d["devices"].append("H100"), "devices[1]: Input should be an object, got 'H100'"),
        (lambda d: d.update(format=2), "format: this vllm-guard reads GPU snapshot format 1, not 2"),
        (lambda d: d.update(devices=[]), "devices: empty, and no problem says why"),
    ],
)
def test_a_malformed_snapshot_names_the_field(damage: Any, message: str) -> None:
    data = _snapshot()
    damage(data)
    with pytest.raises(ValueError, match="^" + message.replace("[", r"\[").replace("|", r"\|")):
        facts_from_json(data, "snapshot gpus.json")


def test_a_snapshot_that_is_not_an_object() -> None:
    with pytest.raises(ValueError, match="JSON object, not list"):
        facts_from_json([], "snapshot gpus.json")  # type: ignore[arg-type]


# ---- Planned cards ----


def test_two_planned_h100s() -> None:
    facts = planned("H100", 2)
    assert facts.source == "planned: NVIDIA H100 80GB HBM3 x 2"
    assert [d.index for d in facts.devices] == [0, 1]
    for gpu in facts.devices:
        assert gpu.name == H100_NAME
        assert gpu.total_bytes == 85520809984
        # an idle card has CUDA's total free: the smallest an H100 was seen with (79.10 GiB)
        assert gpu.free_bytes == gpu.cuda_total_bytes == int(79.10 * (1 << 30))
        assert gpu.compute_capability == (9, 0)
        assert gpu.processes == ()
    assert facts.problem is None


@pytest.mark.parametrize(
    ("name", "card"),
    [
        ("NVIDIA L4", "NVIDIA L4"),
        ("nvidia l40s", "NVIDIA L40S"),
        ("L4", "NVIDIA L4"),  # a whole word beats the substring of L40S
        ("t4", "Tesla T4"),
        ("4090", "NVIDIA GeForce RTX 4090"),
        ("h200", "NVIDIA H200"),
        ("A100-SXM4-40", "NVIDIA A100-SXM4-40GB"),
    ],
)
def test_a_planned_name_finds_its_card(name: str, card: str) -> None:
    assert planned(name, 1).devices[0].name == card


@pytest.mark.parametrize("name", ["A100", "RTX", "80GB"])
def test_an_ambiguous_planned_name_lists_the_matches(name: str) -> None:
    with pytest.raises(ValueError, match="ambiguous") as err:
        planned(name, 1)
    assert "NVIDIA" in str(err.value)


def test_an_unknown_planned_name_lists_the_known_cards() -> None:
    with pytest.raises(ValueError, match="not a card") as err:
        planned("MI300X", 1)
    assert all(card in str(err.value) for card in CARDS)
    with pytest.raises(ValueError, match="not a card"):
        planned("H20", 1)  # a 96 GB card, not the start of the H200's name


def test_a_card_without_a_cuda_total_seen_plans_with_the_largest_reservation() -> None:
    # CUDA's total is NVML's less the driver's reservation; where no log showed it for a card,
    # the largest share any card of the table reserves is taken off, so the plan errs small
    share = max(1 - CUDA_TOTALS[card] / CARDS[card][0] for card in CUDA_TOTALS)
    assert 0 < share < 0.02
    l4 = planned("L4", 1).devices[0]
    assert "NVIDIA L4" not in CUDA_TOTALS
    assert l4.cuda_total_bytes == int(CARDS["NVIDIA L4"][0] * (1 - share))
    for card, cuda in CUDA_TOTALS.items():
        assert 0.97 * CARDS[card][0] < cuda < CARDS[card][0], card


def test_planned_needs_at_least_one_card() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        planned("H100", 0)


def test_every_card_is_whole_mib_with_a_real_capability() -> None:
    for name, (total, (major, minor)) in CARDS.items():
        assert total % (1 << 20) == 0, name
        assert 7 <= major <= 12 and 0 <= minor <= 9, name


# ---- The existing GpuProbe over the same fake ----


def test_nvml_probe_reports_used_without_the_reservation() -> None:
    (memory,) = Nvml(FakePynvml([h100_holding()])).memory()
    assert memory.used == HOLDING_USED_V1 - H100_RESERVED
    assert memory.processes == ((HOLDER_PID, HOLDER_BYTES),)
