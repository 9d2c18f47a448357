#!/bin/sh
# IPDN Exchange container entrypoint: runs the hub or a member node, chosen by ROLE.
#
#   ipdn-entrypoint [serve]   initialise the data directory on first start, then exec the service
#   ipdn-entrypoint health    exit 0 when GET /healthz answers 200 (the image's HEALTHCHECK)
#   ipdn-entrypoint ipdn ...  run any other ipdn command (backup, restore, rotate-key, ...)
#
# Environment (docs/operating-hub.md and docs/operating-node.md, "Container"):
#   ROLE                 hub | node (required)
#   IPDN_DIR             data directory (default /var/lib/ipdn); a volume
#   IPDN_LISTEN_HOST     address to listen on (default 0.0.0.0: all of the container's interfaces)
#   IPDN_PORT            port (default 8440 for the hub, 8441 for a node)
#   hub, first start:    IPDN_PUBLIC_URL (the URL nodes use, signed into the registry),
#                        IPDN_FOUNDERS_DIR (founders' *.pub.jwk.json), IPDN_CHAIR (optional member code)
#   node, first start:   IPDN_MEMBER (e.g. QA), IPDN_KEY_FILE (the member's private key, PEM),
#                        IPDN_REGISTRY_FILE (the signed registry from the chair: the trust anchor)
#   every IPDN_HUB_<KEY> / IPDN_NODE_<KEY> setting (db_url, tls_cert, hub_ca, peers, ...) applies as usual.
set -eu

die() { echo "ipdn-entrypoint: $*" >&2; exit 2; }

ROLE="${ROLE:-}"
IPDN_DIR="${IPDN_DIR:-/var/lib/ipdn}"
HOST="${IPDN_LISTEN_HOST:-0.0.0.0}"
case "$ROLE" in
  hub) PORT="${IPDN_PORT:-8440}"; CONFIG="$IPDN_DIR/hub.toml"; TLS="${IPDN_HUB_TLS_CERT:-}" ;;
  node) PORT="${IPDN_PORT:-8441}"; CONFIG="$IPDN_DIR/node.toml"; TLS="${IPDN_NODE_TLS_CERT:-}" ;;
  *) die "set ROLE=hub or ROLE=node" ;;
esac

init_hub() {
  [ -n "${IPDN_PUBLIC_URL:-}" ] || die "first start of the hub: set IPDN_PUBLIC_URL (the URL nodes reach it at)"
  founders_dir="${IPDN_FOUNDERS_DIR:-}"
  [ -d "${founders_dir:-/nonexistent}" ] || die "first start of the hub: set IPDN_FOUNDERS_DIR to a directory"
  set --
  for jwk in "$founders_dir"/*.pub.jwk.json; do
    [ -e "$jwk" ] || die "no *.pub.jwk.json in $founders_dir"
    set -- "$@" --founder "$jwk"
  done
  [ -z "${IPDN_CHAIR:-}" ] || set -- "$@" --chair "$IPDN_CHAIR"
  [ -z "${IPDN_HUB_DB_URL:-}" ] || set -- "$@" --db-url "$IPDN_HUB_DB_URL"
  ipdn hub init --dir "$IPDN_DIR" --url "$IPDN_PUBLIC_URL" --port "$PORT" "$@"
}

init_node() {
  [ -n "${IPDN_MEMBER:-}" ] || die "first start of a node: set IPDN_MEMBER (its ISO 3166-1 code)"
  [ -r "${IPDN_KEY_FILE:-}" ] || die "first start of a node: IPDN_KEY_FILE must name the member's readable key"
  [ -r "${IPDN_REGISTRY_FILE:-}" ] || die "first start of a node: IPDN_REGISTRY_FILE must name the registry"
  set --
  [ -z "${IPDN_NODE_DB_URL:-}" ] || set -- --db-url "$IPDN_NODE_DB_URL"
  ipdn node init --dir "$IPDN_DIR" --member "$IPDN_MEMBER" --key "$IPDN_KEY_FILE" \
    --registry "$IPDN_REGISTRY_FILE" --port "$PORT" "$@"
}

health() {
  # Liveness on loopback. With TLS served by the service the certificate is not checked here (this
  # probe asks "is it up", not "is it the hub"); IPDN_HEALTH_CLIENT_CERT/KEY for mutual TLS.
  scheme=http; [ -z "$TLS" ] || scheme=https
  exec python3 - "$scheme://127.0.0.1:$PORT/healthz" <<'EOF'
import os, ssl, sys, urllib.request
ctx = None
if sys.argv[1].startswith("https:"):
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    if os.environ.get("IPDN_HEALTH_CLIENT_CERT"):
        ctx.load_cert_chain(os.environ["IPDN_HEALTH_CLIENT_CERT"], os.environ.get("IPDN_HEALTH_CLIENT_KEY"))
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5, context=ctx) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception as e:
    print(f"unhealthy: {e}", file=sys.stderr)
    sys.exit(1)
EOF
}

cmd="${1:-serve}"
case "$cmd" in
  serve)
    if [ ! -f "$CONFIG" ]; then
      umask 077
      mkdir -p "$IPDN_DIR"
      "init_$ROLE"
    fi
    # exec: ipdn replaces this shell (PID 1 in a container), so SIGTERM from `docker stop` reaches it.
    exec ipdn "$ROLE" serve --dir "$IPDN_DIR" --host "$HOST" --port "$PORT"
    ;;
  health) health ;;
  ipdn) shift; exec ipdn "$@" ;;
  *) die "unknown command $cmd (serve, health, or ipdn ...)" ;;
esac
