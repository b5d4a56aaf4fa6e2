"""``bench capacity --replay`` starts `bench stack`'s Stack: the namespace it builds must
carry every option that Stack reads (one it lacked, ``split_cores``, crashed the replay
at start after `bench stack` gained it)."""

from __future__ import annotations

from bench.capacity_replay import PARTITIONS, _stack_args
from bench.stack import parser


def test_replay_stack_args_carry_every_bench_stack_option():
    args = vars(_stack_args(2, "/models"))
    assert set(vars(parser().parse_args([]))) <= set(args)
    assert args["split_cores"] is False and args["tracing"] == "off"
    assert (args["inference"], args["workers"], args["partitions"], args["model_dir"]) == (
        "local", 2, PARTITIONS, "/models"
    )  # fmt: skip
