"""The search's Optuna storage: its URL (by default an SQLite file under the results), opened
with heartbeats so that a killed worker's trial is failed and retried, and the rescue of a
trial killed before its first heartbeat (:func:`give_heartbeats`)."""

from __future__ import annotations

import warnings
from datetime import datetime, timedelta

import optuna
import sqlalchemy
from sqlalchemy.exc import SQLAlchemyError

from deepm3.errors import ConfigError
from deepm3.suite.layout import Layout

RETRIES = 3  # how often a trial whose worker was killed is enqueued again


def storage_url(layout: Layout, url: str | None) -> str:
    """``url``, or the default SQLite file under the results (created when missing)."""
    if url:
        return url
    layout.search.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{layout.optuna_db.resolve()}"


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """The RDB storage, with heartbeats so that a killed worker's trial is failed and enqueued
    again with its parameters (at most :data:`RETRIES` times)."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    try:
        return optuna.storages.RDBStorage(
            url,
            heartbeat_interval=20,
            grace_period=60,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=RETRIES, inherit_intermediate_values=True
            ),
            engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {},
        )
    except (SQLAlchemyError, ImportError, ValueError) as error:  # bad URL, driver, database
        reason = " ".join(str(error).split("\n")[0].split())[:160]
        raise ConfigError(f"storage {url[:120]!r} cannot be opened: {reason}") from None


def give_heartbeats(study: optuna.Study, storage: optuna.storages.BaseStorage) -> list[int]:
    """Record one heartbeat for each RUNNING trial that has none and began over the grace
    period ago; returns their numbers. Its worker was killed between creating the trial and
    its first heartbeat (Optuna samples the trial's settings in between), so Optuna never finds
    it stale and a worker waiting for it would wait forever; with the heartbeat it goes stale
    after the grace period and is retried like any killed trial. Start times are the creating
    machine's local clock (Optuna's), so workers sharing a storage share a time zone."""
    if not isinstance(storage, optuna.storages.RDBStorage) or storage.grace_period is None:
        return []
    study_id = storage.get_study_id_from_name(study.study_name)
    with storage.engine.connect() as connection:
        silent = set(
            connection.execute(
                sqlalchemy.text(
                    "SELECT number FROM trials WHERE study_id = :study AND state = 'RUNNING' "
                    "AND trial_id NOT IN (SELECT trial_id FROM trial_heartbeats)"
                ),
                {"study": study_id},
            ).scalars()
        )
    before = datetime.now() - timedelta(seconds=storage.grace_period)
    found = [
        t.number
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        if t.number in silent and t.datetime_start is not None and t.datetime_start < before
    ]
    for number in found:
        storage.record_heartbeat(storage.get_trial_id_from_study_id_trial_number(study_id, number))
    return found
