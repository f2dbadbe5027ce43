# convirza-import as a container image, for the Kubernetes Job of docs/scaling-out.md.
#
#   docker build -t registry.example.com/convirza-import:0.1.0 .
#   docker run --rm registry.example.com/convirza-import:0.1.0 demo
#
# It holds what tests/test_install_functional.py proves on every CI run, and nothing more: the
# wheel built with `pip wheel --no-deps` from the sources, installed with its dependencies
# from the package index on Python 3.11, running `demo` and `run --job` as a user from an
# empty folder.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY importer ./importer
COPY manifests ./manifests
COPY sample_data ./sample_data
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM python:3.11-slim
# A numeric user, so that `runAsNonRoot: true` can check it; give volumes it writes (the
# ledgers) `fsGroup: 10001` in the pod's securityContext.
RUN useradd --create-home --uid 10001 --user-group convirza
COPY --from=build /dist/ /tmp/dist/
RUN pip install --no-cache-dir /tmp/dist/*.whl && rm -rf /tmp/dist
USER 10001:10001
WORKDIR /home/convirza
ENTRYPOINT ["convirza-import"]
CMD ["--help"]
