"""Stop sequences over a stream of text: emit what is safe, hold back what might start a stop string."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["StopMatcher"]


class StopMatcher:
    """Feed decoded text as it grows; get back the part that can be shown now.

    Text that could be the beginning of a stop sequence is held back until it is clear,
    so a streamed answer never shows a stop sequence or a fragment of one.

    >>> m = StopMatcher(["\\nQ:"])
    >>> m.feed("Paris.\\n"), m.feed("Q: next")
    ('Paris.', '')
    >>> m.stopped
    True
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(stops)
        self.stopped = False
        self._pending = ""

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        self._pending += text
        cut = min((i for i in (self._pending.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            out, self._pending = self._pending[:cut], ""
            return out
        hold = self._longest_stop_prefix_suffix()
        out = self._pending[: len(self._pending) - hold]
        self._pending = self._pending[len(out) :]
        return out

    def flush(self) -> str:
        """The text held back when the stream ends without a stop."""
        out, self._pending = ("" if self.stopped else self._pending), ""
        return out

    def _longest_stop_prefix_suffix(self) -> int:
        best = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(self._pending)), best, -1):
                if self._pending.endswith(stop[:k]):
                    best = k
                    break
        return best
