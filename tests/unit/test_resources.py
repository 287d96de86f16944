"""What a campaign asks of a cluster: caps, refusals and DFT pool sizes (pure arithmetic)."""

from pathlib import Path

from orchestrator.cluster.resources import ClusterView, Demand, check_plan, dft_workers_now, plan_phases

TWO_CPU = ClusterView(({"CPU": 2.0},), ({"CPU": 2.0},))
THREE_NODES = ClusterView(
    ({"CPU": 0.0}, {"CPU": 2.0}, {"CPU": 2.0}),  # head (driver only) + two workers
    ({"CPU": 0.0}, {"CPU": 2.0}, {"CPU": 1.0}),
)


def demo_plan(cluster, **kw):
    args = dict(dft_threads=1, dft_gpu=False, dft_workers=2, trainer_cpus=2, samplers=1, sampler_cpus=2)
    args.update(kw)
    return plan_phases(cluster, use_gpu=False, **args)


def test_demo_fits_a_two_cpu_cluster_phase_by_phase():
    plan = demo_plan(TWO_CPU)
    assert check_plan(plan, TWO_CPU) == []
    assert (plan.trainer.cpus, plan.sampler.cpus, plan.notes) == (2.0, 2.0, ())
    assert dft_workers_now(plan, TWO_CPU) == 2


def test_counts_are_upper_bounds_capped_to_the_largest_node():
    plan = demo_plan(TWO_CPU, trainer_cpus=16, sampler_cpus=8, dft_workers=40)
    assert (plan.trainer.cpus, plan.sampler.cpus) == (2.0, 2.0)
    assert len(plan.notes) == 2 and "2 of the 16 CPUs" in plan.notes[0]
    assert dft_workers_now(plan, TWO_CPU) == 2  # sized to what is free, not to 40
    assert check_plan(plan, TWO_CPU) == []


def test_pool_is_sized_per_node_to_free_cpus():
    plan = demo_plan(THREE_NODES, dft_workers=8, dft_threads=1)
    assert dft_workers_now(plan, THREE_NODES) == 3  # 0 + 2 + 1 free
    plan2 = demo_plan(THREE_NODES, dft_workers=8, dft_threads=2)
    assert dft_workers_now(plan2, THREE_NODES) == 1  # only node 1 has 2 free on one node
    busy = ClusterView(THREE_NODES.nodes, ({"CPU": 0.0},) * 3)
    assert dft_workers_now(plan, busy) == 1  # at least one, which then waits for room


def test_a_dft_worker_no_node_holds_is_one_line_naming_what_was_asked_and_what_there_is():
    plan = demo_plan(THREE_NODES, dft_threads=64)
    [problem] = check_plan(plan, THREE_NODES)
    assert problem == (
        "a DFT worker asks 64 CPUs on one node; this cluster has 3 nodes, 4 CPUs, no GPU; largest node 2 CPUs"
    )
    gpu = plan_phases(TWO_CPU, 1, True, 2, 1, 1, 1, use_gpu=False)
    assert check_plan(gpu, TWO_CPU) == [
        "a DFT worker asks 1 GPU + 1 CPU on one node; this cluster has 1 node, 2 CPUs, no GPU; largest node 2 CPUs"
    ]


def test_an_autoscaler_turns_refusal_into_waiting():
    scaling = ClusterView(THREE_NODES.nodes, THREE_NODES.free, autoscaling=True)
    assert check_plan(demo_plan(scaling, dft_threads=64), scaling) == []


def test_trainer_on_a_gpu_node_is_capped_by_that_node():
    mixed = ClusterView(({"CPU": 32.0}, {"CPU": 4.0, "GPU": 1.0}), ({"CPU": 32.0}, {"CPU": 4.0, "GPU": 1.0}))
    plan = plan_phases(mixed, 1, False, 64, 8, 2, 2, use_gpu=True)
    assert plan.trainer == Demand("the trainer", 4.0, 1.0)
    assert plan.sampler == Demand("a sampler", 2.0, 0.5)
    assert check_plan(plan, mixed) == []
    assert dft_workers_now(plan, mixed) == 36


def test_fits_now_reads_free_resources_not_totals():
    d = Demand("a DFT worker", 2.0)
    assert THREE_NODES.fits(d) and THREE_NODES.fits_now(d)  # node 1 has 2 free
    busy = ClusterView(THREE_NODES.nodes, ({"CPU": 0.0}, {"CPU": 1.0}, {"CPU": 1.0}))
    assert busy.fits(d) and not busy.fits_now(d)


def test_async_campaign_threads_fit_the_cores(monkeypatch):
    from orchestrator.cluster.connect import fit_async_threads
    from orchestrator.config import load_config

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    path = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
    demo = load_config(path)  # trainer 2 + sampler 2 + DFT 2 x 1 threads
    assert fit_async_threads(demo, cores=2) == (demo, None)  # rounds: one phase at a time
    async_cfg = load_config(path, ["campaign.mode=async"])
    fitted, note = fit_async_threads(async_cfg, cores=2)
    assert (fitted.ray.trainer_cpus, fitted.ray.sampler_cpus) == (1, 1) and "1 thread each" in note
    assert fit_async_threads(async_cfg, cores=16) == (async_cfg, None)  # room for all of them
    assert fit_async_threads(fitted, cores=2) == (fitted, None)  # nothing left to cut
