# The image cluster.yaml runs on every node: Ray's GPU image (CUDA, Python 3.11, Ray 2.60) plus
# the venv ~/medsweep/venv holding torch (with its CUDA libraries), Ray's dashboard and every
# other dependency, so a node that joins (a spot replacement too) installs nothing big.
#
#   docker build -t YOUR-REGISTRY/medsweep:ray2.60.0-py311-gpu .
#   docker push YOUR-REGISTRY/medsweep:ray2.60.0-py311-gpu
#
# then put that name in cluster.yaml's docker.image (docs/cluster.md, "Build the image").
# torch's wheels use CUDA 13: the host's NVIDIA driver must be 580 or newer.
FROM rayproject/ray:2.60.0-py311-gpu

# The image's user is ray (home /home/ray, group users). cluster.yaml's setup finds the venv
# at ~/medsweep/venv and only re-links the project to the source it copies in.
COPY --chown=ray:users pyproject.toml README.md /home/ray/medsweep/src/
COPY --chown=ray:users medvit /home/ray/medsweep/src/medvit
COPY --chown=ray:users trainables /home/ray/medsweep/src/trainables
COPY --chown=ray:users sweeps /home/ray/medsweep/src/sweeps
COPY --chown=ray:users analysis /home/ray/medsweep/src/analysis
COPY --chown=ray:users medsweep /home/ray/medsweep/src/medsweep
RUN python3.11 -m venv /home/ray/medsweep/venv \
    && /home/ray/medsweep/venv/bin/pip install --no-cache-dir 'setuptools>=68' \
    && /home/ray/medsweep/venv/bin/pip install --no-cache-dir --no-build-isolation -e '/home/ray/medsweep/src[cluster]'
