"""Shopify's cost-based leaky bucket (one per store, i.e. per app and shop)."""

import threading
import time


class LeakyBucket:
    """Holds up to `maximum` points and refills at `restore_rate` points/second.

    A query is admitted when its requested cost fits in what is available;
    the requested cost is taken up front and the unused part (requested -
    actual) is given back after execution, like Shopify does."""

    def __init__(self, maximum=2000.0, restore_rate=100.0, clock=time.monotonic):
        self.maximum = float(maximum)
        self.restore_rate = float(restore_rate)
        self._clock = clock
        self._available = self.maximum
        self._t = clock()
        self._lock = threading.Lock()

    def _refill(self):
        now = self._clock()
        if now > self._t:
            self._available = min(self.maximum, self._available + (now - self._t) * self.restore_rate)
        self._t = now

    def available(self):
        with self._lock:
            self._refill()
            return self._available

    def try_take(self, cost):
        """Take `cost` points if available; False (nothing taken) otherwise."""
        with self._lock:
            self._refill()
            if cost > self._available:
                return False
            self._available -= cost
            return True

    def give_back(self, points):
        with self._lock:
            self._refill()
            self._available = min(self.maximum, self._available + points)

    def set_available(self, points):
        with self._lock:
            self._refill()
            self._available = max(0.0, min(self.maximum, float(points)))

    def configure(self, maximum=None, restore_rate=None):
        with self._lock:
            self._refill()
            if maximum is not None:
                self.maximum = float(maximum)
                self._available = min(self._available, self.maximum)
            if restore_rate is not None:
                self.restore_rate = float(restore_rate)

    def status(self):
        """The `throttleStatus` object of a response."""
        avail = self.available()
        return {"maximumAvailable": self.maximum,
                "currentlyAvailable": int(avail),
                "restoreRate": self.restore_rate}
