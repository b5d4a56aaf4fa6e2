"""The simulator's scaling semantics and its model of a replica, on cases small enough to
work out by hand (numbers in the comments)."""

from __future__ import annotations

import itertools

import pytest

from control_plane.capacity.policy import load_policy
from control_plane.capacity.simulate import (
    PoolSpec,
    Scaler,
    Scaling,
    SimConfig,
    Simulation,
    WorkerSpec,
    call_seconds,
    compare,
    config_from_policy,
    cron_seconds,
    engine_batch_words,
    engine_batches,
    hpa_ratio_desired,
    local_config,
    simulate,
)
from control_plane.capacity.traffic import Job

ALL = ("critical", "high", "normal")


def one_replica(words_per_s: float = 100.0, *, batch_words: int = 1000, urgent: int = 1,
                **pool) -> SimConfig:  # fmt: skip
    """One fixed worker on one fixed replica: no scaling, no start-up."""
    return SimConfig(
        workers=(WorkerSpec("w", ALL, "p", 1, 1, start_s=0, urgent_slots=urgent, scaled=False),),
        pools=(PoolSpec("p", ALL, words_per_s, 1, 1, start_s=0, scaled=False, **pool),),
        batch_words=batch_words,
        dt=0.1,
    )


def done(result, index: int) -> float:
    return round(result.completion_s[index], 1)


# -- the HPA / KEDA decision -------------------------------------------------------------


def test_tolerance_keeps_the_count_within_ten_percent():
    assert hpa_ratio_desired(10, 1.05, 0.1) == 10
    assert hpa_ratio_desired(10, 1.2, 0.1) == 12
    assert hpa_ratio_desired(3, 0.5, 0.1) == 2  # ceil(1.5)


def test_scale_up_is_rate_limited_per_period():
    # 4 pods per 15 s from 1 towards 20: 5, 9, 13, 17, 20
    s = Scaler("w", 0, 20, Scaling(up_pods=4, up_period_s=15), down_window_s=0)
    current, seen = 1, []
    for t in range(0, 75, 15):
        current = s.decide(float(t), current, 20, active=True)
        seen.append(current)
    assert seen == [5, 9, 13, 17, 20]


def test_scale_down_waits_for_the_stabilisation_window_then_halves_per_minute():
    # 8 wanted at t=0, then 2 from t=15: the 600 s window keeps 8 while t=0 is in it
    # (up to t=600); from t=615 the window says 2 but 50% per 60 s allows 4, then 2
    s = Scaler("w", 1, 10, Scaling(down_stabilization_s=600, down_percent=50, down_period_s=60),
               down_window_s=600)  # fmt: skip
    current = s.decide(0.0, 8, 8, active=True)
    history = {}
    for t in range(15, 800, 15):
        current = s.decide(float(t), current, 2, active=True)
        history[t] = current
    assert history[600] == 8
    assert history[615] == 4
    assert history[660] == 4  # still inside the 60 s period of the first step down
    assert history[675] == 2
    assert history[795] == 2


def test_cooldown_to_zero_only_after_the_idle_period():
    s = Scaler("w", 0, 5, Scaling(cooldown_s=600, down_stabilization_s=0), down_window_s=0)
    assert s.decide(0.0, 0, 3, active=True) == 1  # KEDA activates 0 -> 1
    current = s.decide(15.0, 1, 3, active=True)  # then the HPA: 3
    assert current == 3
    # inactive from t=30 on: the HPA goes down to 1 (its own minimum), KEDA to 0 at 615
    for t in range(30, 615, 15):
        current = s.decide(float(t), current, 0, active=False)
        assert current >= 1
    assert s.decide(615.0, current, 0, active=False) == 0
    assert s.decide(630.0, 0, 0, active=False) == 0  # stays down while inactive


def test_min_replicas_hold_without_work():
    s = Scaler("w", 2, 5, Scaling(cooldown_s=60, down_stabilization_s=0), down_window_s=0)
    current = 4
    for t in range(0, 3600, 15):
        current = s.decide(float(t), current, 0, active=False)
    assert current == 2


def test_a_cron_floor_holds_replicas_and_counts_as_activity():
    s = Scaler("w", 0, 5, Scaling(cooldown_s=60, down_stabilization_s=0), down_window_s=0)
    assert s.decide(0.0, 0, 0, active=False, floor=2) == 1  # activation first
    assert s.decide(15.0, 1, 0, active=False, floor=2) == 2
    assert s.decide(3000.0, 2, 0, active=False, floor=2) == 2


def test_cron_subset():
    assert cron_seconds("0 8 * * 1-5", 1) == [8 * 3600.0]
    assert cron_seconds("30 18 * * 1-5", 6) == []  # Saturday
    assert cron_seconds("0 8 1 * *", 1) is None  # day of month: not simulated


# -- one replica, by hand ------------------------------------------------------------------


def test_one_job_takes_its_words_over_the_replica_speed_plus_latency():
    config = one_replica(100.0)
    config = SimConfig(**{**config.__dict__, "latency_s": 0.5})
    r = simulate(config, [Job(0, 0.0, "normal", 1000)])
    assert done(r, 0) == 10.5  # 1000 words at 100 words/s + 0.5 s


def test_batches_queue_behind_each_other_on_one_slot():
    # batch_words 1000: each job is its own batch; one slot for normal work
    r = simulate(one_replica(100.0), [Job(0, 0.0, "normal", 1000), Job(1, 0.0, "normal", 1000)])
    assert (done(r, 0), done(r, 1)) == (10.0, 20.0)


def test_one_batch_holds_several_chunks_that_end_together():
    # 2,000 words = 2 chunks of 1,000; batch_words 8000 takes both: one batch of 20 s
    r = simulate(one_replica(100.0, batch_words=8000), [Job(0, 0.0, "normal", 2000)])
    assert done(r, 0) == 20.0


def test_critical_work_takes_the_urgent_slot_and_runs_first():
    # a 2,000-word normal batch from t=0; a 100-word critical job at t=5 runs on the
    # urgent slot with the whole replica (1 s) while the normal batch waits: 21 s
    jobs = [Job(0, 0.0, "normal", 2000), Job(1, 5.0, "critical", 100)]
    r = simulate(one_replica(100.0, batch_words=8000), jobs)
    assert done(r, 1) == 1.0
    assert done(r, 0) == 21.0


def test_without_an_urgent_slot_critical_waits_for_the_batch():
    jobs = [Job(0, 0.0, "normal", 2000), Job(1, 5.0, "critical", 100)]
    r = simulate(one_replica(100.0, batch_words=8000, urgent=0), jobs)
    assert done(r, 0) == 20.0
    assert done(r, 1) == 16.0  # starts at 20, ends at 21: 16 s after its arrival


def test_aging_lifts_a_waiting_level():
    # one slot, batch_words 1000: high work keeps arriving; a normal chunk that waited
    # aging_s climbs one level and is served before high chunks that came after it
    jobs = [Job(0, 0.0, "high", 1000), Job(1, 0.0, "normal", 1000)]
    jobs += [Job(k, 1.0 * k, "high", 1000) for k in range(2, 12)]
    config = SimConfig(**{**one_replica(100.0, urgent=0).__dict__, "aging_s": 15.0})
    r = simulate(config, jobs)
    # (control_plane.queue.buffer's rule: level - waited // aging_s, not below critical,
    # ties to the older head). t=0: high 0 (1) before normal (2); t=10: high 2 waited 8
    # (1) vs normal 10 (2); t=20: high 3 waited 17 (0) vs normal 20 (1); t=30: high 4
    # waited 26 (0) ties with normal waited 30 (0), the older wins: normal runs 30..40
    assert done(r, 1) == 40.0


def test_two_replicas_on_shared_cores_split_the_speed():
    # the local stack: two workers, 100 words/s in all; two 1,000-word jobs at once
    # run side by side at 50 words/s each: both end at 20 s; one alone takes 10 s
    config = local_config(100.0, workers=2, dt=0.1)
    r = simulate(config, [Job(0, 0.0, "normal", 1000), Job(1, 0.0, "normal", 1000)])
    assert (done(r, 0), done(r, 1)) == (20.0, 20.0)
    r = simulate(config, [Job(0, 0.0, "normal", 1000)])
    assert done(r, 0) == 10.0


# -- scaling in the simulation ------------------------------------------------------------


def scaled_from_zero(**kw) -> SimConfig:
    return SimConfig(
        workers=(WorkerSpec("w", ALL, "p", 0, 4, lag_threshold=5, start_s=20, urgent_slots=0),),
        pools=(PoolSpec("p", ALL, 100.0, 0, 4, start_s=90),),
        scaling=Scaling(polling_s=15, cooldown_s=600),
        dt=1.0,
        **kw,
    )


def test_scale_from_zero_waits_for_start_up_then_goes_back_to_zero_after_cooldown():
    # t=0: lag 1 activates the worker (ready at 20) and the pool (ready at 90); the batch
    # runs 90..100; the last poll with work is t=90 (in flight), so both go to zero at the
    # first poll 600 s later, t=690: each billed 690 replica-seconds
    r = simulate(scaled_from_zero(), [Job(0, 0.0, "normal", 1000)], until_s=2000)
    assert done(r, 0) == 100.0
    assert r.replica_seconds == {"w": 690.0, "p": 690.0}


def test_spot_interruption_requeues_the_work_in_flight(monkeypatch):
    # a spot pool of one replica; the reclaim notice comes at t=1 (the rng's second
    # draw), the replacement starts then (ready at 21), the old one goes at t=6 with the
    # batch that started at t=0 still running: its chunk is queued again and runs 21..31
    config = SimConfig(
        workers=(WorkerSpec("w", ALL, "p", 1, 1, start_s=0, urgent_slots=0, scaled=False),),
        pools=(PoolSpec("p", ALL, 100.0, 1, 1, start_s=20, spot=True, scaled=False),),
        spot_per_hour=1.0,
        spot_notice_s=5.0,
        dt=1.0,
    )
    sim = Simulation(config, [Job(0, 0.0, "normal", 1000)])
    draws = itertools.chain([1.0, 0.0], itertools.repeat(1.0))
    monkeypatch.setattr(sim.rng, "random", lambda: next(draws))
    r = sim.run()
    assert r.spot_interruptions == 1
    assert r.requeued_chunks == 1
    assert done(r, 0) == 31.0


def test_the_policy_file_runs_and_is_deterministic():
    policy = load_policy()
    config = config_from_policy(policy, {"gpu": 600_000.0, "gpu-spot": 600_000.0})
    assert {w.name for w in config.workers} == {w.name for w in policy.workers}
    assert config.scaling.polling_s == policy.keda.polling_interval_seconds
    jobs = [Job(k, 10.0 * k, ("critical", "high", "normal")[k % 3], 300 + 50 * k)
            for k in range(60)]  # fmt: skip
    a = simulate(config, jobs, until_s=3600)
    b = simulate(config, jobs, until_s=3600)
    assert a.completion_s == b.completion_s
    assert len(a.completion_s) == 60
    sla = a.sla()
    assert sla["critical"]["within_sla"] == 1.0  # a warm replica, 1 s of work at most


def test_compare_reports_relative_errors():
    jobs = [Job(0, 0, "normal", 10), Job(1, 0, "normal", 2000), Job(2, 0, "high", 500)]
    c = compare({0: 1.1, 1: 5.0, 2: 2.0}, {0: 1.0, 1: 10.0, 2: 2.0}, jobs)
    assert c["groups"]["all"]["n"] == 3
    assert c["groups"]["all"]["within_20pct"] == pytest.approx(2 / 3, abs=1e-3)
    assert c["groups"]["all"]["median_abs_rel_error"] == pytest.approx(0.1)
    assert c["groups"][">= 1000 words"]["median_rel_error"] == pytest.approx(-0.5)


def test_a_jobs_chunks_stay_on_the_worker_that_owns_its_partition():
    # Kafka's key is the job id: two jobs on partition 0 both go to worker 0, one after
    # the other at the whole machine's speed (worker 1 has nothing): 10 s and 20 s
    config = local_config(100.0, workers=2, partitions=2, dt=0.1, batch_words=1000)
    jobs = [Job(0, 0.0, "normal", 1000, partition=0), Job(1, 0.0, "normal", 1000, partition=0)]
    r = simulate(config, jobs)
    assert (done(r, 0), done(r, 1)) == (10.0, 20.0)
    jobs = [Job(0, 0.0, "normal", 1000, partition=0), Job(1, 0.0, "normal", 1000, partition=1)]
    r = simulate(config, jobs)
    assert (done(r, 0), done(r, 1)) == (20.0, 20.0)


def test_a_call_costs_replica_time_on_top_of_its_words():
    # 2 s per call of 300 words or more, linearly less below: 1,000 words at 100 words/s
    # take 10 + 2 s; 30 words take 0.3 + 0.2 s
    config = SimConfig(**{**one_replica(100.0).__dict__, "batch_overhead_s": 2.0})
    assert done(simulate(config, [Job(0, 0.0, "normal", 1000)]), 0) == 12.0
    assert done(simulate(config, [Job(0, 0.0, "normal", 30)]), 0) == 0.5


# -- the engine's lanes ---------------------------------------------------------------------


def test_a_call_gets_one_engine_batch_per_lane_all_of_one_size():
    # 2 lanes of 50 words/s; engine batches of at most 300 words (32 sentences, so about
    # 9.4 words each): 200 words are two batches of 100 side by side (2 s, as the engine
    # cuts them: buckets.lane_rows), a one-sentence call of 9 words runs on one lane
    config = one_replica(100.0, lanes=2, lane_words=300.0)
    assert done(simulate(config, [Job(0, 0.0, "normal", 200)]), 0) == 2.0
    assert done(simulate(config, [Job(0, 0.0, "normal", 9)]), 0) == 0.2  # 0.18 s, dt 0.1
    assert done(simulate(config, [Job(0, 0.0, "normal", 600)]), 0) == 6.0
    # 1,000 words: four batches of 250 (not 300, 300, 300, 100) on two lanes: 10 s
    assert done(simulate(config, [Job(0, 0.0, "normal", 1000)]), 0) == 10.0


def test_engine_batches_and_a_calls_time_alone():
    assert engine_batches(200, 200, 2, 300.0) == [100.0, 100.0]
    assert engine_batches(9, 9, 2, 300.0) == [9.0]
    assert engine_batches(1000, 1100, 2, 300.0) == [275.0] * 4  # its work, evenly
    assert engine_batches(200, 200, 0, 300.0) == [200.0]  # no lanes: the whole call
    # alone on an idle replica of 100 words/s with 2 lanes
    assert call_seconds(200, 100.0, 2, 300.0) == 2.0
    assert call_seconds(9, 100.0, 2, 300.0) == 0.18
    assert call_seconds(1000, 100.0, 2, 300.0) == 10.0
    assert call_seconds(900, 100.0, 2, 300.0) == 12.0  # three of 300: two rounds
    assert call_seconds(200, 100.0, 0, 300.0) == 2.0


def test_a_lane_finishes_its_engine_batch_before_critical_work_takes_it():
    # a 600-word normal call holds both lanes from 0 to 6 s; a 50-word critical job at
    # t=1 (urgent slot, two batches of 25) waits for the lanes: 6..6.5 s
    jobs = [Job(0, 0.0, "normal", 600), Job(1, 1.0, "critical", 50)]
    r = simulate(one_replica(100.0, batch_words=8000, lanes=2, lane_words=300.0), jobs)
    assert (done(r, 0), done(r, 1)) == (6.0, 5.5)


def test_a_free_lane_takes_the_most_urgent_engine_batch():
    # normal: one call of 1,200 words (four batches of 300); critical 50 words at t=1
    # (two of 25). At 6 s both lanes free: the critical batches take them (6..6.5), the
    # normal's third and fourth batches run 6.5..12.5
    jobs = [Job(0, 0.0, "normal", 1200), Job(1, 1.0, "critical", 50)]
    r = simulate(one_replica(100.0, batch_words=8000, lanes=2, lane_words=300.0), jobs)
    assert (done(r, 0), done(r, 1)) == (12.5, 5.5)


def test_lanes_of_two_workers_share_the_machine():
    # the local stack, 100 words/s in all: one 200-word call per worker, two batches of
    # 100 each, four lanes on the machine's 100 words/s (25 each): 4 s; a 600-word call
    # (two of 300) on one worker with a 200-word call on the other: four lanes at 25
    # words/s until the small one ends (4 s), then 50 words/s each for the 600-word
    # call's last 200 words per lane (4 s more)
    config = local_config(100.0, workers=2, lanes=2, lane_words=300.0, partitions=2, dt=0.1)
    jobs = [Job(0, 0.0, "normal", 200, partition=0), Job(1, 0.0, "normal", 200, partition=1)]
    r = simulate(config, jobs)
    assert (done(r, 0), done(r, 1)) == (4.0, 4.0)
    jobs = [Job(0, 0.0, "normal", 600, partition=0), Job(1, 0.0, "normal", 200, partition=1)]
    r = simulate(config, jobs)
    assert (done(r, 0), done(r, 1)) == (8.0, 4.0)


def test_a_jobs_last_chunk_adds_its_host_work():
    # 1 ms of the worker's own work per word outside the lanes: a 300-word job alone
    # (one chunk) takes 3 s on the replica's 100 words/s plus 0.3 s; a 3,000-word job
    # (three chunks of 1,000) adds only its last chunk's 1 s: the others overlapped
    config = SimConfig(**{**one_replica(100.0).__dict__, "serial_s_per_word": 0.001})
    assert done(simulate(config, [Job(0, 0.0, "normal", 300)]), 0) == 3.3
    assert done(simulate(config, [Job(0, 0.0, "normal", 3000)]), 0) == 31.0
    assert local_config(100.0, serial_s_per_word=0.002).serial_s_per_word == 0.002


def test_a_replica_is_no_faster_than_the_machine_it_shares():
    # one worker alone measured 200 words/s, every worker busy 100 in all: a job alone
    # on one replica runs at the machine's 100 (the 2-core EPYC's replays, 2026-12-01)
    config = local_config(200.0, workers=2, machine_words_per_s=100.0, dt=0.1)
    assert config.pools[0].words_per_s == 100.0
    r = simulate(config, [Job(0, 0.0, "normal", 400, partition=0)])
    assert done(r, 0) == 4.0
    assert local_config(80.0, workers=2, machine_words_per_s=100.0).pools[0].words_per_s == 80.0


def test_engine_batch_words_is_max_batch_times_the_words_per_segment():
    texts = ["One two three four.\nFive six.\n", "Seven eight nine ten eleven twelve.\n"]
    # segments: 4, 2 and 6 words: 4 words per segment; batches of 32 segments
    assert engine_batch_words(texts, 32) == 128.0
