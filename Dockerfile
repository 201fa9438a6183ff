# herald with Chromium and the fonts its PDFs use; every herald service of docker-compose.yml
# runs this image with its own command (`herald …`, `dramatiq jobs`, `periodiq jobs`).
FROM python:3.11-slim-bookworm

# Chromium prints the PDFs; DejaVu is their font and Symbola their emoji; poppler-utils gives
# pdftotext, to read a PDF's text from a shell.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        chromium fonts-dejavu-core fonts-symbola poppler-utils \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HERALD_CHROMIUM_PATH=/usr/bin/chromium

WORKDIR /src
COPY pyproject.toml README.md ./
COPY herald herald
COPY models models
COPY tenantdb tenantdb
COPY jobs jobs
COPY pipeline pipeline
COPY services services
COPY api api
COPY renderers renderers
COPY delivery delivery
COPY admin admin
RUN pip install . && rm -rf /src

# Not root: Chromium, the API and everything else run as this user.
RUN useradd --create-home --uid 10001 herald
USER herald
WORKDIR /home/herald
EXPOSE 8000 8501 9191 9300
CMD ["herald", "--help"]
