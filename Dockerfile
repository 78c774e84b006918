# clapdex for the team stack (docker-compose.yml): the API (`clapdex serve`) and the page
# (`clapdex ui`) from one image. CPU torch; mount the library read-only at /library.
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
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu ".[qdrant,postgres]"
RUN useradd --create-home clapdex
USER clapdex
ENV CLAPDEX_HOME=/home/clapdex/home
