# The riverbed worker image used by docker-compose.yml.
FROM python:3.11-slim
WORKDIR /opt/riverbed
COPY pyproject.toml README.md ./
COPY app ./app
COPY models ./models
RUN pip install --no-cache-dir .
ENV RIVERBED_WEB_HOST=0.0.0.0 \
    RIVERBED_DATA_DIR=/var/lib/riverbed
EXPOSE 6066
ENTRYPOINT ["riverbed"]
CMD ["worker", "-l", "info"]
