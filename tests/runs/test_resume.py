"""Checkpoints and resume: exactness after SIGKILL, damaged files, refused configs, faults."""
import errno
import json
import os
import signal
from pathlib import Path

import pytest
import torch

from sac_runner.errors import ConfigError, NonFiniteError, TrainingInterrupted
from sac_runner.runs import checkpoint as ckpt
from sac_runner.training.trainer import Trainer

from helpers import (
    cheetah,
    episode_rows,
    eval_rows,
    poison_critic_from,
    sac_run_killed_and_resumed,
    same_weights,
)


@pytest.mark.slow
@pytest.mark.parametrize("every,where,update", [(150, "mid-episode", "fast"), (200, "episode boundary", "fast"),
                                               (150, "mid-episode", "autograd")])
def test_sigkill_and_resume_is_bit_exact(tmp_path, every, where, update):
    killed, reference, state = sac_run_killed_and_resumed(tmp_path, [*cheetah(total=1000, every=every),
                                                                     f"update={update}"])
    in_episode = int(state["envs"]["episode_length"].sum())
    assert (in_episode > 0) == (where == "mid-episode")
    assert eval_rows(killed) == eval_rows(reference)  # same returns, no duplicated rows
    assert episode_rows(killed) == episode_rows(reference)
    assert same_weights(killed, reference)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm, saved", [("crossq", "running_var"), ("sql", "critic_target")])
def test_sigkill_and_resume_of_crossq_and_sql_is_bit_exact(tmp_path, algorithm, saved):
    """CrossQ: its batch-normalization statistics (buffers of the networks) are in the checkpoint and model.pt."""
    killed, reference, _ = sac_run_killed_and_resumed(tmp_path, [*cheetah(total=600, every=200),
                                                                 f"algorithm={algorithm}"])
    assert eval_rows(killed) == eval_rows(reference)
    assert same_weights(killed, reference)
    model = torch.load(killed / "model.pt", weights_only=True)
    assert any(saved in key for key in [*model, *model["critic"]])


def test_checkpoint_holds_the_full_training_state_and_loads_as_data_only(cfg_factory, tmp_path):
    Trainer(cfg_factory(*cheetah(total=300, every=150))).train()
    path = tmp_path / "run" / "checkpoints" / "step_000000300.pt"
    state = torch.load(path, weights_only=True)  # no pickled code objects inside
    assert set(state["agent"]) >= {"actor", "critic", "critic_target", "log_alpha", "actor_optim", "critic_optim",
                                   "generator"}
    # the temperature's Adam moments sit at the end of the actor's flat buffer
    n_actor = sum(t.numel() for t in state["agent"]["actor"].values())
    assert state["agent"]["actor_optim"]["exp_avg"].shape == (n_actor + 1,)
    assert state["replay"]["size"] == 300 and state["replay"]["fields"]["obs"].shape[0] == 300
    assert state["trainer"]["step"] == 300 and state["config"]["env"]["id"] == "HalfCheetah-v5"
    assert set(state["rng"]) == {"python", "numpy_global", "torch", "action_rng"}
    assert state["envs"]["envs"][0]["physics"] is not None
    assert "wandb_run_id" in state


def test_only_the_last_k_checkpoints_are_kept(cfg_factory, tmp_path):
    Trainer(cfg_factory(*cheetah(total=600, every=100), "keep_checkpoints=2")).train()
    steps = [s for s, _ in ckpt.list_checkpoints(tmp_path / "run" / "checkpoints")]
    assert steps == [500, 600]
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "step_000000500.json", "step_000000500.pt", "step_000000600.json", "step_000000600.pt"]


@pytest.mark.parametrize("damage", ["truncate", "flip", "no_manifest_truncated"])
def test_damaged_newest_checkpoint_falls_back_to_the_previous(cfg_factory, tmp_path, caplog, damage):
    Trainer(cfg_factory(*cheetah(total=400, every=200))).train()
    directory = tmp_path / "run" / "checkpoints"
    newest = directory / "step_000000400.pt"
    data = newest.read_bytes()
    if damage == "truncate":
        newest.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        newest.write_bytes(data[:1000] + bytes([data[1000] ^ 0xFF]) + data[1001:])
    else:  # no manifest to check against, and the file does not load
        newest.with_suffix(".json").unlink()
        newest.write_bytes(data[: len(data) // 2])
    path, state = ckpt.load_latest(directory)
    assert path.name == "step_000000200.pt" and state["trainer"]["step"] == 200
    assert "step_000000400.pt" in caplog.text and "trying the previous one" in caplog.text
    # moved aside, named in the log: it no longer counts as a checkpoint
    assert f"moved to {directory / 'damaged' / 'step_000000400.pt'}" in caplog.text
    assert [s for s, _ in ckpt.list_checkpoints(directory)] == [200]
    # and a resumed run continues from there
    trainer = Trainer(cfg_factory(*cheetah(total=400, every=200)))
    assert trainer.step == 200


def test_a_checkpoint_with_code_inside_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    path = tmp_path / "step_000000001.pt"
    torch.save({"format": ckpt.FORMAT_VERSION, "evil": Payload()}, path)
    with pytest.raises(ckpt.CheckpointError, match="could not be read: it holds objects other than tensors") as e:
        ckpt.load_file(path, check=False)
    assert "weights_only" not in str(e.value) and "\n" not in str(e.value)  # no advice to load it unsafely
    assert not (tmp_path / "pwned").exists()


def test_resume_refuses_a_different_env_or_network(cfg_factory, tmp_path):
    Trainer(cfg_factory(*cheetah(total=200, every=200))).train()
    with pytest.raises(ConfigError, match=r"env.id \('HalfCheetah-v5' in the checkpoint, 'Hopper-v5' now\)"):
        Trainer(cfg_factory(*cheetah(total=400, every=200), "env=Hopper", "env.max_episode_steps=100"))
    with pytest.raises(ConfigError, match=r"network.hidden_sizes \(\[32, 32\] in the checkpoint, \[64, 64\] now\)"):
        Trainer(cfg_factory(*cheetah(total=400, every=200), "network.hidden_sizes=[64,64]"))


def test_resume_may_raise_total_steps_to_extend_a_run(cfg_factory, tmp_path):
    Trainer(cfg_factory(*cheetah(total=200, every=200))).train()
    summary = Trainer(cfg_factory(*cheetah(total=400, every=200))).train()
    assert summary["global_step"] == 400
    assert [s for s, *_ in eval_rows(tmp_path / "run")] == [200, 400]


def test_resume_from_a_named_run_dir_writes_into_that_run(cfg_factory, tmp_path):
    original = tmp_path / "original"
    Trainer(cfg_factory(*cheetah(total=200, every=200), run_dir=original)).train()
    trainer = Trainer(cfg_factory(*cheetah(total=400, every=200), f"resume={original}", run_dir=tmp_path / "new"))
    assert trainer.step == 200 and trainer.run_dir.path == original
    trainer.train()
    assert [s for s, *_ in eval_rows(original)] == [200, 400]


def test_non_finite_values_stop_the_run_and_keep_the_last_good_checkpoint(cfg_factory, tmp_path):
    trainer = Trainer(cfg_factory(*cheetah(total=1000, every=100), "log_every=50"))
    poison_critic_from(trainer, 230)
    with pytest.raises(NonFiniteError) as e:
        trainer.train()
    assert "loss/critic became nan between steps 200 and 250" in str(e.value)
    steps = [s for s, _ in ckpt.list_checkpoints(tmp_path / "run" / "checkpoints")]
    assert steps[-1] == 200
    _, state = ckpt.load_latest(tmp_path / "run" / "checkpoints")
    assert all(torch.isfinite(w).all() for w in state["agent"]["critic"].values())


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(cfg_factory, tmp_path, monkeypatch):
    trainer = Trainer(cfg_factory(*cheetah(total=400, every=200)))
    real_save = torch.save

    def save_until_full(obj, f, *args, **kwargs):
        if obj.get("trainer", {}).get("step") == 400:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(ckpt.torch, "save", save_until_full)
    with pytest.raises(ckpt.CheckpointError,
                       match="No space left on device; the previous checkpoint .*step_000000200.pt is intact"):
        trainer.train()
    files = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert files == ["step_000000200.json", "step_000000200.pt"]
    assert ckpt.verify(tmp_path / "run" / "checkpoints" / "step_000000200.pt") is None


@pytest.mark.parametrize("name", ["model.pt", "best_model.pt"])
def test_a_full_disk_writing_a_model_file_is_one_error_that_keeps_the_checkpoint(cfg_factory, tmp_path, monkeypatch,
                                                                                 name):
    trainer = Trainer(cfg_factory(*cheetah(total=400, every=200)))
    real_save = torch.save

    def save_model_until_full(obj, f, *args, **kwargs):
        if Path(f.name).name == f".{name}.tmp":  # this model file only, not checkpoints
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_model_until_full)
    with pytest.raises(ckpt.CheckpointError, match=rf"could not write .*{name}: No space left on device; no earlier "
                                                   r"one exists, and the last good checkpoint is kept: .*step_"):
        trainer.train()
    run = tmp_path / "run"
    assert not (run / name).exists() and not (run / f".{name}.tmp").exists()
    assert ckpt.verify(ckpt.list_checkpoints(run / "checkpoints")[-1][1]) is None


def test_an_unwritable_output_dir_is_a_clear_error(cfg_factory, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"output dir .*a_file/run is not writable"):
        Trainer(cfg_factory(*cheetah(total=200, every=200), run_dir=blocker / "run"))


def test_a_replay_buffer_larger_than_memory_is_refused_at_start(cfg_factory):
    with pytest.raises(ConfigError,
                       match=r"buffer_size=10000000000 needs \d+\.\d GiB .* but only \d+\.\d GiB is available"):
        Trainer(cfg_factory(*cheetah(total=200, every=200), "hyperparameters.buffer_size=10000000000"))


def test_sigterm_checkpoints_then_stops(cfg_factory, tmp_path):
    trainer = Trainer(cfg_factory(*cheetah(total=5000, every=5000)))
    update = trainer.agent.update

    def update_then_signal(batch):
        if trainer.step == 333:
            os.kill(os.getpid(), signal.SIGTERM)
        return update(batch)

    trainer.agent.update = update_then_signal
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted, match="stopped by SIGTERM at step 333"):
        trainer.train()
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "run" / "checkpoints")] == [333]
    assert signal.getsignal(signal.SIGTERM) is before  # our handler is gone after training


def test_rerunning_a_finished_run_adds_nothing(cfg_factory, tmp_path, caplog):
    caplog.set_level("INFO")
    first = Trainer(cfg_factory(*cheetah(total=200, every=200))).train()
    before = (tmp_path / "run" / "metrics.jsonl").read_text()
    again = Trainer(cfg_factory(*cheetah(total=200, every=200))).train()
    assert "already complete at step 200" in caplog.text
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == before
    assert again["eval/return_mean"] == first["eval/return_mean"]


def test_generator_state_from_another_device_type_reseeds_with_a_warning(caplog):
    from sac_runner.rng import restore_generator

    generator = torch.Generator().manual_seed(0)
    foreign = torch.zeros(16, dtype=torch.uint8)  # a CUDA generator's state is 16 bytes, a CPU one's 5056
    restore_generator(generator, foreign, fallback_seed=7)
    assert "not bit-identical" in caplog.text
    assert torch.equal(torch.randn(3, generator=generator), torch.randn(3, generator=torch.Generator().manual_seed(7)))


def test_bf16_run_compiles_trains_and_resumes(cfg_factory, tmp_path):
    """precision=bf16 turns torch.compile on by itself; the run trains, checkpoints and continues from a checkpoint."""
    trainer = Trainer(cfg_factory(*cheetah(total=300, every=150), "precision=bf16", "log_every=100"))
    assert trainer.agent.compiled and trainer.agent.precision == "bf16" and trainer.agent.update_path == "fast"
    trainer.train()
    assert trainer.agent.compiled, "compilation failed and fell back to eager"
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss/critic"] for r in rows if "loss/critic" in r]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    assert all(p.dtype == torch.float32 for p in trainer.agent.critic.parameters())  # master weights stay fp32

    resumed = Trainer(cfg_factory(*cheetah(total=450, every=150), "precision=bf16", "log_every=100"))
    assert resumed.step == 300 and resumed.agent.num_updates == trainer.agent.num_updates
    resumed.train()
    assert resumed.step == 450


def test_a_checkpoint_from_an_older_layout_is_a_clear_error(cfg_factory, tmp_path):
    """A valid file whose agent state has another layout (an earlier optimizer format) is refused in one line."""
    Trainer(cfg_factory(*cheetah(total=200, every=100))).train()
    ckpt_dir = tmp_path / "run" / "checkpoints"
    path, state = ckpt.load_latest(ckpt_dir)
    state["agent"]["actor_optim"] = {"state": {}, "param_groups": [{"lr": 3e-4}]}  # torch.optim's layout
    written = ckpt.save(ckpt_dir, 300, state, keep=50)
    source = tmp_path / "run" / "config.yaml"
    before = source.read_text()
    with pytest.raises(ConfigError, match=r"cannot resume from .*step_0*300\.pt: its contents do not fit .*KeyError"):
        Trainer(cfg_factory(*cheetah(total=400, every=100), f"resume={written}"))
    assert source.read_text() == before and written.exists()  # nothing rewritten, nothing removed
