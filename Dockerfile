# syntax=docker/dockerfile:1
# starsock: the rendezvous and relay server with its page, as a container.
#   docker build -t starsock .
#   docker run -d --name starsock -p 9090:9090 -v starsock-data:/var/lib/starsock starsock
# See docs/deploy.md (TLS through a reverse proxy, the UDP relay's ports, upgrades).

# Build stage: dependencies with dev tools, the build (tsc, the page, the browser bundle), the tarball.
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# Scripts off: `prepare` would build before the sources are copied; nothing here needs a native build.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY . .
RUN npm run build && mkdir /pkg && npm pack --ignore-scripts --pack-destination /pkg

# Runtime stage: only the packed package and its production dependencies, run by a non-root user.
FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    STARSOCK_GATEWAY_KEY=/var/lib/starsock/gateway-key
COPY --from=build /pkg/ /tmp/pkg/
# Scripts off: a published tarball needs none (bufferutil loads its prebuilt binary, or ws does without it).
RUN npm install -g --omit=dev --ignore-scripts --no-audit --no-fund /tmp/pkg/starsock-*.tgz \
    && rm -rf /tmp/pkg /root/.npm \
    && mkdir -p /var/lib/starsock && chown 1000:1000 /var/lib/starsock
# The gateway peer's key (--gateway) lives here; keep it on a volume so its peer id survives upgrades.
VOLUME ["/var/lib/starsock"]
WORKDIR /var/lib/starsock
# UID 1000 is the image's `node` user; numeric so a runtime can check it is not root.
USER 1000:1000
EXPOSE 9090
# The server drains open streams on SIGTERM (--shutdown-grace-ms, 5 s by default; docker stop waits 10 s).
STOPSIGNAL SIGTERM
# node's fetch: the slim image has no curl. PORT is the same variable `starsock serve` reads.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 9090) + '/healthz', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["starsock"]
CMD ["serve", "--host", "0.0.0.0"]
