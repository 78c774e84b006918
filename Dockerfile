# clapdex for the team stack (docker-compose.yml): the API (`clapdex serve`) and the page
# (`clapdex ui`) from one image, and the Ray nodes of its cluster profile. CPU torch unless
# TORCH_INDEX says otherwise; mount the library read-only at /library.
FROM python:3.11-slim
RUN apt-get update -q && apt-get install -y -q --no-install-recommends ffmpeg libsndfile1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/clapdex
COPY pyproject.toml README.md LICENSE ./
COPY clapdex clapdex
COPY encoders encoders
COPY indexer indexer
COPY search search
COPY server server
COPY training training
COPY ui ui
# The cluster profile's Ray nodes build with EXTRAS=qdrant,postgres,cluster (Ray), and for a GPU
# worker with TORCH_INDEX=https://download.pytorch.org/whl/cu128 (docs/scaling.md).
ARG EXTRAS=qdrant,postgres
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir --extra-index-url "$TORCH_INDEX" ".[$EXTRAS]"
RUN useradd --create-home clapdex
USER clapdex
ENV CLAPDEX_HOME=/home/clapdex/home
