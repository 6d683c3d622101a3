# syntax=docker/dockerfile:1
# starsock: the rendezvous and relay server with its page, as a container.
#   docker build -t starsock .
#   docker run -d --name starsock -p 9090:9090 -v starsock-data:/var/lib/starsock starsock
# See docs/deploy.md (TLS through a reverse proxy, the UDP relay's ports, upgrades).

# Build stage: dependencies with dev tools, the build (tsc, the page, the browser bundle), the tarball.
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# Scripts off: no dependency needs an install script here (bufferutil loads a prebuilt binary, or
# ws does without it), and the build below runs once the sources are in.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY . .
RUN npm run build && mkdir /pkg && npm pack --ignore-scripts --pack-destination /pkg
# What the runtime runs: the packed package unpacked, with its production dependencies at the
# versions of package-lock.json (a tarball never carries the lock: installing it would take the
# newest versions the ranges allow).
RUN mkdir /app && tar -xzf /pkg/starsock-*.tgz -C /app --strip-components=1 && cp package-lock.json /app/ && cd /app && npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# Runtime stage: only the unpacked package and its locked production dependencies, run by a non-root user.
FROM node:20-bookworm-slim AS runtime
# HOST and PORT are the variables `starsock serve` reads: `docker run -e HOST=... -e PORT=...` works.
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    STARSOCK_GATEWAY_KEY=/var/lib/starsock/gateway-key
COPY --from=build /app /app
RUN ln -s /app/bin/starsock.js /usr/local/bin/starsock \
    && mkdir -p /var/lib/starsock && chown 1000:1000 /var/lib/starsock
# The gateway peer's key (--gateway) lives here; keep it on a volume so its peer id survives upgrades.
VOLUME ["/var/lib/starsock"]
WORKDIR /var/lib/starsock
# UID 1000 is the image's `node` user; numeric so a runtime can check it is not root.
USER 1000:1000
EXPOSE 9090
# The server drains open streams on SIGTERM (--shutdown-grace-ms, 5 s by default; docker stop waits 10 s).
STOPSIGNAL SIGTERM
# node's fetch: the slim image has no curl. PORT and STARSOCK_PATH are the variables `starsock serve`
# reads: with STARSOCK_PATH=/PREFIX/socket.io the check asks /PREFIX/healthz. (A port or path given
# as a flag in the command instead is not seen here: set them with -e.)
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "const prefix = (process.env.STARSOCK_PATH || '/socket.io').replace(/\\/$/, '').replace(/\\/socket\\.io$/, ''); fetch('http://127.0.0.1:' + (process.env.PORT || 9090) + prefix + '/healthz', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["starsock"]
CMD ["serve"]
