# The riverbed worker image used by docker-compose.yml. It runs as the unprivileged user
# riverbed (uid 10001); its only writable directory is /var/lib/riverbed (Faust's data
# directories; the models themselves live in Kafka).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /opt/riverbed
COPY pyproject.toml README.md ./
COPY app ./app
COPY models ./models
RUN pip install --no-cache-dir . \
    && groupadd --system --gid 10001 riverbed \
    && useradd --system --uid 10001 --gid riverbed --home-dir /var/lib/riverbed \
       --no-create-home --shell /usr/sbin/nologin riverbed \
    && mkdir -p /var/lib/riverbed \
    && chown riverbed:riverbed /var/lib/riverbed \
    && chmod 0750 /var/lib/riverbed
ENV HOME=/var/lib/riverbed \
    RIVERBED_WEB_HOST=0.0.0.0 \
    RIVERBED_DATA_DIR=/var/lib/riverbed
USER riverbed
EXPOSE 6066
ENTRYPOINT ["riverbed"]
CMD ["worker", "-l", "info"]
