# CPU image. For a GPU server, build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
# (a CUDA build of the same torch release) and run with --gpus all; NEWSMT_DEVICE=auto then picks the GPU.
FROM python:3.11-slim
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 NEWSMT_MODELS_DIR=/data/models NEWSMT_CACHE_DIR=/data/cache NEWSMT_HOST=0.0.0.0
WORKDIR /app
# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build into a CPU image.
RUN pip install --no-cache-dir --index-url "$TORCH_INDEX" torch==2.13.0
COPY pyproject.toml README.md ./
COPY service ./service
RUN pip install --no-cache-dir . && useradd --create-home newsmt && mkdir -p /data && chown newsmt /data
USER newsmt
VOLUME /data
EXPOSE 8000
# Models are installed into the volume once: docker run ... newsmt models pull
ENTRYPOINT ["newsmt"]
CMD ["serve", "--port", "8000"]
