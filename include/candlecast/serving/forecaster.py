"""Online forecasts, answered from memory.

A stream's forecast depends only on its deployed champion and its latest closed candle's
features, which change once per candle and once per deployment. So the :class:`Forecaster`
keeps, per stream, one immutable :class:`Snapshot` (the ONNX session, its metadata, the feature
row or window, and the forecast computed from them) and answers from it. A snapshot is
rebuilt by :meth:`Forecaster.refresh`: when the pipeline announces news (``POST /refresh``,
:mod:`.notify`), on the first request for a stream, and by the service's periodic check. The
new snapshot replaces the old one in one assignment, so a request is answered by exactly one
version; a model that fails to load or to forecast on the current features is never switched
to (the previous one keeps serving and the failure is logged and counted).

Degrade, don't stall: online store reads are bounded (a connect and read timeout, no retry)
and pass a :class:`~candlecast.serving.breaker.CircuitBreaker`. A request never waits on
another request's refresh, and while the store is down a stream that has a snapshot is
answered from it at once (marked stale, with why and since when) and refreshed in the
background once the breaker allows a trial; a stream with nothing in memory gets a 503 whose
one line says why.

A request names a stream by symbol alone when that is unambiguous, else with its exchange and
timeframe too (:meth:`candlecast.config.PairsConfig.resolve`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

import numpy as np

from candlecast.config import PairConfig, PairsConfig, load_pairs
from candlecast.errors import ConfigError, NotReadyError
from candlecast.features import online as featurestore  # reads only: no TA-Lib, no training
from candlecast.modeling.kinds.base import window_inputs
from candlecast.serving import metrics
from candlecast.serving import targets as served_targets
from candlecast.serving.announcements import Announcements
from candlecast.serving.breaker import CircuitBreaker, StoreUnavailableError
from candlecast.serving.feature_reader import FactsReader, OnlineReader, feast_reader
from candlecast.serving.loaded import LoadedModel, ModelLoadError, load_model
from candlecast.serving.modelstore import bentoml_store
from candlecast.serving.options import ServiceOptions
from candlecast.serving.snapshot import Snapshot, answer, select
from candlecast.settings import Settings, get_settings, read_settings
from candlecast.timeframes import ms_to_iso, timeframe_ms

log = logging.getLogger(__name__)


class Forecaster:
    """Answers forecasts for the configured streams from in-memory snapshots."""

    def __init__(
        self,
        settings: Settings | None = None,
        pairs: PairsConfig | None = None,
        options: ServiceOptions | None = None,
        online: OnlineReader | None = None,
    ) -> None:
        """``online``: where online rows come from (default: Feast opened in this process;
        the service's workers pass the feature reader process's, :mod:`.feature_reader`)."""
        self.settings = settings or get_settings()
        options = options or read_settings(ServiceOptions)
        self._fixed = pairs
        self._config: tuple[tuple[int, int] | None, PairsConfig] = (None, pairs or self._load())
        bentoml_store(self.settings)
        self._read = online or feast_reader(self.settings, options.store_timeout_seconds)
        self.online = CircuitBreaker("online store", cooldown_s=options.store_cooldown_seconds)
        self._reviving: set[str] = set()
        self._snapshots: dict[str, Snapshot] = {}
        self._errors: dict[str, str] = {}
        self._rejected: dict[str, tuple[str, str]] = {}  # stream key -> (tag, why)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._resolved: dict[tuple[str, str | None, str | None], PairConfig] = {}
        self._resolved_for: PairsConfig | None = None
        self.announcements = Announcements(self.settings.paths.home)
        self._seen: dict[str, int] = {}
        self._target_models: dict[str, served_targets.ServedTarget] = {}

    # -- config ------------------------------------------------------------------------------

    def _load(self) -> PairsConfig:
        return load_pairs(self.settings.pairs)

    @property
    def pairs(self) -> PairsConfig:
        """The pair config, re-read when its file changes, so a stream added to the config is
        answered without a restart. A file that no longer validates keeps the last good one
        (logged), so a typo cannot take the service down."""
        if self._fixed is not None:
            return self._fixed
        try:
            stat = self.settings.pairs.stat()
            version = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            return self._config[1]
        if version != self._config[0]:
            try:
                self._config = (version, self._load())
                log.info("pair config %s (re)loaded", self.settings.pairs)
            except ConfigError as exc:
                log.error("keeping the last valid pair config: %s", exc)
                self._config = (version, self._config[1])
        return self._config[1]

    def resolve(
        self, symbol: str, exchange: str | None = None, timeframe: str | None = None
    ) -> PairConfig:
        """The configured stream a request names (raises UnknownStreamError or
        AmbiguousStreamError); successful look-ups are remembered until the config changes."""
        config = self.pairs
        if config is not self._resolved_for:
            self._resolved, self._resolved_for = {}, config
        key = (symbol, exchange, timeframe)
        found = self._resolved.get(key)
        if found is None:
            found = config.resolve(symbol, exchange, timeframe)
            if len(self._resolved) < 10_000:
                self._resolved[key] = found
        return found

    # -- answers -----------------------------------------------------------------------------

    def needs_refresh(self, pair: PairConfig) -> bool:
        """Whether the stream has no snapshot yet, or news was announced since it was loaded
        (cheap: one ``stat`` while nothing changed)."""
        key = pair.key
        current = self._snapshots.get(key)
        if current is None or current.pair is not pair:
            return True
        return self.announcements.counts().get(key, 0) != self._seen.get(key, 0)

    def snapshot(self, pair: PairConfig) -> Snapshot:
        """The snapshot to answer from now, waiting only when it must and never long.

        A stream with nothing in memory is refreshed first (a read bounded by the store
        timeout, or refused at once by the open breaker). A stream with a snapshot is
        refreshed first only when news is pending, the store is healthy and no other request
        is refreshing it; during an outage its snapshot answers at once and a background
        refresh tries the store when the breaker allows.

        Raises:
            NotReadyError: nothing in memory and nothing loadable (the message says why).
        """
        current = self._snapshots.get(pair.key)
        if current is None or current.pair is not pair:
            return self.refresh(pair, force=False)
        if self.online.outage() is not None:
            if self.online.trial_due():
                self._revive(pair)
            return current
        if self.needs_refresh(pair):
            return self.refresh(pair, force=False, wait=False)
        return current

    def waits(self, pair: PairConfig) -> bool:
        """Whether :meth:`snapshot` may touch a store (then call it off the event loop)."""
        return self.needs_refresh(pair) or self.online.outage() is not None

    def _revive(self, pair: PairConfig) -> None:
        """Refresh the stream in a background thread, unless one already is."""
        with self._locks_guard:
            if pair.key in self._reviving:
                return
            self._reviving.add(pair.key)

        def run() -> None:
            try:
                self.refresh(pair)
            except NotReadyError:
                pass  # said by error() and the answers
            finally:
                with self._locks_guard:
                    self._reviving.discard(pair.key)

        threading.Thread(target=run, name=f"revive-{pair.key}", daemon=True).start()

    def predict(
        self,
        symbol: str,
        exchange: str | None = None,
        timeframe: str | None = None,
        horizon: int = 1,
        target: str | None = None,
    ) -> dict[str, Any]:
        """A stream's forecasts (``BTC/USD``, or with exchange/timeframe): every target, or
        one ``target`` at one ``horizon``."""
        body = answer(self.snapshot(self.resolve(symbol, exchange, timeframe)))
        if target is None and horizon == 1:
            return body
        return select(body, target, horizon)

    def predict_rows(
        self, pair: PairConfig, features: list[str], rows: list[list[float]]
    ) -> tuple[Snapshot, np.ndarray]:
        """Forecasts of the stream's served model for a user's feature rows (columns named by
        ``features``, the model's feature list in any order; oldest row first).

        Raises:
            ValueError: the columns or rows do not fit the model's input schema.
        """
        snap = self.snapshot(pair)
        model = snap.model
        expected = model.features
        if sorted(features) != sorted(expected) or len(set(features)) != len(features):
            missing = sorted(set(expected) - set(features))
            extra = sorted(set(features) - set(expected))
            raise ValueError(
                f"{pair.stream.label}: the model reads {len(expected)} features "
                f"(missing: {', '.join(missing) or 'none'}; unknown: {', '.join(extra) or 'none'})"
            )
        for index, row in enumerate(rows):  # before numpy, whose message names no row
            if len(row) != len(features):
                raise ValueError(
                    f"rows[{index}] holds {len(row)} values; every row holds one per feature "
                    f"({len(features)})"
                )
        x = np.asarray(rows, dtype=np.float32)
        if not np.isfinite(x).all():
            raise ValueError("feature values must be finite numbers")
        if features != expected:
            x = x[:, [features.index(name) for name in expected]]
        window = model.window
        if len(x) < window:
            raise ValueError(f"the model reads windows of {window} rows; {len(x)} given")
        if window > 1:
            x = np.lib.stride_tricks.sliding_window_view(x, (window, x.shape[1]))
            x = np.ascontiguousarray(x.reshape(len(x), -1))
        return snap, model.run(x)

    # -- loading -----------------------------------------------------------------------------

    def _lock(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def refresh(self, pair: PairConfig, force: bool = True, wait: bool = True) -> Snapshot:
        """Rebuild the stream's snapshot from the stores: the newest deployed model (loaded
        and smoke-tested only when it changed) and the newest online features. Without
        ``force``, only when :meth:`needs_refresh` still holds once the stream's lock is held
        (requests that waited for one refresh do not each repeat it). Without ``wait``, a
        stream that another thread is refreshing returns its current snapshot at once.

        Raises:
            NotReadyError: nothing deployed, or no usable features.
        """
        key = pair.key
        lock = self._lock(key)
        if not lock.acquire(blocking=wait or key not in self._snapshots):
            return self._snapshots[key]
        try:
            target = self.announcements.counts().get(key, 0)
            current = self._snapshots.get(key)
            fresh = current is not None and current.pair is pair
            if not force and fresh and self._seen.get(key, 0) == target:
                return current  # type: ignore[return-value]
            try:
                model = self._newest_model(pair, current)
                snap = self._build(pair, model)
            except NotReadyError as exc:
                self._errors[key] = str(exc)
                metrics.REFRESHES.labels(stream=key, outcome="not_ready").inc()
                if current is None or not fresh:
                    raise
                # A refresh that finds nothing (the model store moved away, an online store
                # restarted empty) keeps the working snapshot: its answers turn stale with
                # their features, and the periodic check or the next announcement tries again.
                log.warning(
                    "%s: refresh found nothing; serving %s: %s", key, current.model.tag, exc
                )
                self._seen[key] = target
                return current
            except Exception as exc:
                # A store that fails (online store down): keep serving what is loaded.
                down = isinstance(exc, StoreUnavailableError)
                self._errors[key] = str(exc) if down else f"{type(exc).__name__}: {exc}"
                metrics.REFRESHES.labels(stream=key, outcome="error").inc()
                if current is None:
                    raise NotReadyError(f"{pair.stream.label}: {exc}") from exc
                if not down:  # an outage is logged once, where it starts (_online)
                    log.exception("%s: refresh failed; still serving the loaded snapshot", key)
                return current
            self._snapshots[key] = snap  # the atomic switch
            self._seen[key] = target
            self._errors.pop(key, None)
        finally:
            lock.release()
        metrics.REFRESHES.labels(stream=key, outcome="ok").inc()
        metrics.observe_snapshot(snap)
        return snap

    def refresh_all(self) -> dict[str, str | None]:
        """Refresh every configured stream (the periodic check); returns errors per stream."""
        outcome: dict[str, str | None] = {}
        for pair in self.pairs.pairs:
            try:
                self.refresh(pair)
                outcome[pair.key] = None
            except NotReadyError as exc:
                outcome[pair.key] = str(exc)
        return outcome

    def _newest_model(self, pair: PairConfig, current: Snapshot | None) -> LoadedModel:
        import bentoml

        try:
            stored = bentoml.models.get(f"{pair.stream.bento_model}:latest")
        except bentoml.exceptions.NotFound:
            raise NotReadyError(
                f"{pair.stream.label}: no model deployed yet; train it with its train DAG "
                f"({pair.stream.train_dag_id}) or `candlecast run --pair {pair.symbol} "
                f"-e {pair.exchange} -t {pair.timeframe}`"
            ) from None
        tag, key = str(stored.tag), pair.key
        if current is not None and current.model.tag == tag:
            return current.model
        rejected = self._rejected.get(key)
        if current is not None and rejected is not None and rejected[0] == tag:
            return current.model  # tried already: wait for the next deployment
        try:
            loaded = load_model(stored)
            self._smoke(pair, loaded)
        except StoreUnavailableError:
            raise  # the store's fault, not the model's: tried again with the store
        except Exception as exc:
            metrics.REFRESHES.labels(stream=pair.key, outcome="model_rejected").inc()
            if current is None:
                raise NotReadyError(f"{pair.stream.label}: model {tag} unusable: {exc}") from exc
            log.error("%s: model %s rejected, serving %s: %s", key, tag, current.model.tag, exc)
            self._rejected[key] = (tag, f"model {tag} rejected: {exc}")
            return current.model
        self._rejected.pop(key, None)
        log.info("loaded %s (%s v%s)", tag, loaded.card.kind, loaded.card.version)
        return loaded

    def _smoke(self, pair: PairConfig, model: LoadedModel) -> None:
        """A new model must forecast a finite number on the stream's current features."""
        snap = self._build(pair, model)
        if not math.isfinite(snap.predicted):
            raise ModelLoadError(f"smoke forecast is {snap.predicted}")

    def _build(self, pair: PairConfig, model: LoadedModel) -> Snapshot:
        columns = [*model.features, "close", "candle_ts"]
        values = self._online(pair, columns)
        missing = [c for c in columns if values.get(c) is None]
        if missing:
            raise NotReadyError(
                f"{pair.stream.label}: no online features ({', '.join(missing[:3])} missing); "
                "materialize the stream first"
            )
        candle_ts = int(values["candle_ts"])
        if model.window == 1:
            x = np.array([[values[c] for c in model.features]], dtype=np.float32)
        else:
            x = self._window_row(pair, model.features, model.window, candle_ts)
        predicted = float(model.run(x)[0])
        extra = self._targets(pair, predicted)
        return Snapshot(pair, model, candle_ts, float(values["close"]), predicted, extra=extra)

    def _targets(self, pair: PairConfig, predicted: float) -> served_targets.TargetForecasts | None:
        """The stream's other targets' answers; a failure there is logged and leaves them out,
        never the next-candle forecast."""
        try:
            loaded = served_targets.load(pair, self.settings, self._target_models)

            def online(columns: list[str]) -> dict[str, Any]:
                return self._online(pair, columns)

            return served_targets.forecasts(pair, self.settings, loaded, predicted, online)
        except StoreUnavailableError:
            raise  # a snapshot without its targets is not switched to during an outage
        except Exception:
            log.exception("%s: target forecasts unavailable", pair.key)
            return None

    def _online(self, pair: PairConfig, columns: list[str]) -> dict[str, Any]:
        """The stream's online values, read through the breaker; a failure is logged where an
        outage starts and where it ends, not per read.

        Raises:
            StoreUnavailableError: the read failed or the breaker refused it.
        """
        before = self.online.outage()
        try:
            values = self.online.call(lambda: self._read(pair.stream, columns))
        except StoreUnavailableError:
            metrics.STORE_FAILURES.labels(store="online", outcome="refused").inc()
            raise
        except Exception as exc:
            metrics.STORE_FAILURES.labels(store="online", outcome="error").inc()
            outage = self.online.outage()
            if before is None and outage is not None:
                log.error("online store %s; serving snapshots from memory", outage.reason)
            message = outage.describe(time.time()) if outage else f"{type(exc).__name__}: {exc}"
            raise StoreUnavailableError(f"online store {message}") from exc
        if before is not None:
            log.warning("online store answers again after %.0f s", time.time() - before.since)
        return values

    def _window_row(
        self, pair: PairConfig, features: list[str], window: int, candle_ts: int
    ) -> np.ndarray:
        """The last ``window`` feature rows up to the online row, flattened as in training
        (read from the offline store, which holds every row the online one came from)."""
        step = timeframe_ms(pair.timeframe)
        table = featurestore.offline_table(pair.stream, self.settings)
        rows = table.read(candle_ts - (window - 1) * step, candle_ts + 1)
        if len(rows) == window:
            x, usable = window_inputs(rows, features, window, step)
            if usable[-1]:
                return x[-1:].astype(np.float32)
        raise NotReadyError(
            f"{pair.stream.label}: the model reads {window} consecutive feature rows and the "
            f"store has {len(rows)} up to {ms_to_iso(candle_ts)}"
        )

    # -- state -------------------------------------------------------------------------------

    def served(self) -> dict[str, Snapshot]:
        """The snapshots being served, by stream key."""
        return dict(self._snapshots)

    def error(self, key: str) -> str | None:
        """Why the stream is not served, or why its newest deployed model is not."""
        rejected = self._rejected.get(key)
        return self._errors.get(key) or (rejected[1] if rejected else None)

    def feature_reader_facts(self) -> dict[str, Any] | None:
        """The feature reader process's pid, resident bytes and libraries, when online rows come
        from one (None when this process reads Feast itself)."""
        return self._read.facts() if isinstance(self._read, FactsReader) else None

    def online_store_ok(self) -> str | None:
        """None when the online store answers a read, else why not."""
        config = self.pairs.pairs
        if not config:
            return "no stream configured"
        try:
            self._online(config[0], ["candle_ts"])
        except StoreUnavailableError as exc:
            return str(exc)
        return None

    def status(self) -> dict[str, Any]:
        """What is deployed for each stream (for the health endpoint)."""
        deployed: dict[str, Any] = {}
        for pair in self.pairs.pairs:
            try:
                snap = self.snapshot(pair)
            except NotReadyError as exc:
                deployed[pair.key] = {"error": str(exc)}
                continue
            deployed[pair.key] = {
                "pair": pair.symbol,
                "exchange": pair.exchange,
                "timeframe": pair.timeframe,
                "model_version": snap.model.card.version,
                "kind": snap.model.card.kind,
                "bento_model": snap.model.tag,
            }
        served = sum("error" not in found for found in deployed.values())
        outage = self.online.outage()
        if served == len(deployed) and outage is None:
            state = "ok"
        elif served:
            state = "degraded"
        else:
            state = "nothing served"
        # the state in plain words: "ok" only when every configured stream is answered fresh
        return {
            "status": state,
            "served": served,
            "configured": len(deployed),
            "streams": deployed,
            "degraded": [f"online store {outage.describe(time.time())}"] if outage else [],
        }
