"""Ray Tune glue: the trainable and its loggers."""

from medvit.openmp import set_default_wait_policy

# A trial's worker imports this package (to unpickle the trainable) before it imports torch:
# the wait policy must be in the environment by then, whatever the cluster's nodes inherited.
set_default_wait_policy()
