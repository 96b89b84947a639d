"""`prunekit bench ...`: every benchmark in one place (decode speed, Deco-G step cost and guidance, the
context pruner's throughput, the service under load and under attack)."""
