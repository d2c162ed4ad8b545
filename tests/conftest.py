import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

# Hypothesis fails an example that runs over 200 ms by default: a timing assert, which a loaded 2-core CI
# machine trips. Property tests assert behaviour only.
try:
    from hypothesis import settings

    settings.register_profile("gtracd", deadline=None)
    settings.load_profile("gtracd")
except ImportError:  # hypothesis is in the dev extra
    pass
