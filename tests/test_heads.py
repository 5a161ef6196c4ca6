import pytest
import torch

from pipeline.config import HeadConfig
from pipeline.models.heads import build_head

STREAMABLE = [("lstm", "mean"), ("lstm", "last"), ("gru", "mean"), ("gru", "last"), ("meanpool", "mean"),
              ("lstm+skip", "mean"), ("lstm+skip", "last"), ("gru+skip", "mean")]


def make(type_, pool="mean", layers=2, bidirectional=False):
    """type_ 'lstm+skip': an LSTM head with head.skip=true (read-outs see [state, input])."""
    torch.manual_seed(0)
    type_, _, skip = type_.partition("+")
    h = build_head(HeadConfig(type=type_, pool=pool, num_layers=layers, bidirectional=bidirectional,
                              hidden_size=32, proj_dim=24, skip=bool(skip)), in_dim=40, num_classes=5)
    return h.eval()


@pytest.mark.parametrize("type_, pool", STREAMABLE)
def test_step_by_step_equals_full_pass(type_, pool):
    head = make(type_, pool)
    x = torch.randn(2, 11, 40)
    with torch.no_grad():
        full = head(x)
        state = None
        for t in range(11):
            out, state = head.step(x[:, t], state)
            assert torch.allclose(out.steps, full.steps[:, t], atol=1e-5)
    assert torch.allclose(out.clip, full.clip, atol=1e-5)
    assert full.clip.shape == (2, 5) and full.steps.shape == (2, 11, 5)


@pytest.mark.parametrize("type_, pool, bidir", [(*s, False) for s in STREAMABLE] + [
    ("lstm", "mean", True), ("lstm", "last", True), ("lstm+skip", "last", True)])
def test_padding_does_not_change_outputs(type_, pool, bidir):
    head = make(type_, pool, bidirectional=bidir)
    a, b = torch.randn(7, 40), torch.randn(4, 40)
    x = torch.zeros(2, 7, 40)
    x[0], x[1, :4] = a, b
    with torch.no_grad():
        batch = head(x, torch.tensor([7, 4]))
        alone = head(b[None])
    assert torch.allclose(batch.clip[1], alone.clip[0], atol=1e-5)
    assert torch.allclose(batch.steps[1, :4], alone.steps[0], atol=1e-5)


def test_bidirectional_cannot_stream():
    head = make("lstm", bidirectional=True)
    with pytest.raises(RuntimeError, match="cannot stream"):
        head.step(torch.randn(1, 40))


@pytest.mark.parametrize("type_", ["lstm", "gru", "meanpool", "lstm+skip"])
def test_gradients_reach_every_parameter_and_no_nans(type_):
    head = make(type_).train()
    out = head(torch.randn(3, 9, 40) * 50, torch.tensor([9, 5, 1]))
    (out.clip.sum() + out.steps.sum()).backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert torch.isfinite(out.clip).all()


@pytest.mark.parametrize("type_", ["lstm", "meanpool"])
def test_an_ensemble_reads_the_mean_probability_of_its_heads_and_streams(type_):
    """train.ensemble: one head whose outputs are the log of its members' mean probability, step by step as in
    one pass; a saved state says how many members it holds (models.checkpoint.head_of rebuilds it from that)."""
    from pipeline.models.heads import EnsembleHead, ensemble_members

    torch.manual_seed(0)
    hcfg = HeadConfig(type=type_, hidden_size=32, proj_dim=24)
    head = build_head(hcfg, in_dim=40, num_classes=5, members=3).eval()
    assert isinstance(head, EnsembleHead) and len(head.members) == 3
    x = torch.randn(2, 9, 40)
    with torch.no_grad():
        full = head(x)
        probs = torch.stack([torch.softmax(m(x).clip, -1) for m in head.members])
        assert torch.allclose(full.clip.exp(), probs.mean(0), atol=1e-6)
        assert not torch.allclose(probs[0], probs[1], atol=1e-3)  # the members differ (their own init)
        state = None
        for t in range(9):
            out, state = head.step(x[:, t], state)
            assert torch.allclose(out.steps, full.steps[:, t], atol=1e-5)
        assert torch.allclose(out.clip, full.clip, atol=1e-5)
    sd = head.state_dict()
    assert ensemble_members(sd) == 3 and ensemble_members(build_head(hcfg, 40, 5).state_dict()) == 1
    again = build_head(hcfg, 40, 5, members=ensemble_members(sd))
    again.load_state_dict(sd)
    with torch.no_grad():
        assert torch.allclose(again.eval()(x).clip, full.clip)


def test_a_next_event_ensemble_averages_next_actions_and_times():
    torch.manual_seed(1)
    head = build_head(HeadConfig(hidden_size=16, proj_dim=16, time_head=True), 40, 4, next_event=True,
                      members=2).eval()
    x = torch.randn(1, 6, 40)
    with torch.no_grad():
        out, members = head(x), [m(x) for m in head.members]
    assert torch.allclose(out.time, (members[0].time + members[1].time) / 2)
    assert torch.allclose(out.next.exp(), (torch.softmax(members[0].next, -1) + torch.softmax(members[1].next, -1)) / 2,
                          atol=1e-6)
    assert torch.allclose(head.transition_matrix(), (head.members[0].transition_matrix()
                                                     + head.members[1].transition_matrix()) / 2)
