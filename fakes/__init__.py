"""Fake APNs and FCM servers on loopback, for development, tests and benchmarks."""
