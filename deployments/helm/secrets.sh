#!/bin/sh
# Prints the Secrets the plugbus chart reads, made from what
# `broker auth init DIR` wrote, as Kubernetes manifests:
#
#   bin/broker auth init ./plugbus-auth
#   deployments/helm/secrets.sh ./plugbus-auth [NAMESPACE] | kubectl apply -f -
#
#   plugbus-broker     broker.creds, signing.nk   the brokers (broker.credentials.secretName)
#   plugbus-admin      admin.creds                hostd's init container, busctl (hostd.hostCreds.adminSecretName)
#   plugbus-nats-auth  plugbus-auth.conf          the NATS servers (public JWTs only)
#
# Nothing is sent anywhere: pipe it to kubectl, or keep it in your secret
# store (it holds the account signing key and the admin's credentials).
set -eu
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 AUTH_DIR [NAMESPACE]   (AUTH_DIR: what broker auth init wrote)" >&2
  exit 2
fi
dir=$1
ns=${2:-}
for f in creds/broker.creds signing.nk creds/admin.creds plugbus-auth.conf; do
  if [ ! -r "$dir/$f" ]; then
    echo "$0: $dir/$f is missing or unreadable: run broker auth init $dir first" >&2
    exit 1
  fi
done

b64() { base64 < "$1" | tr -d '\n'; }

secret() {
  name=$1
  shift
  echo "---"
  echo "apiVersion: v1"
  echo "kind: Secret"
  echo "metadata:"
  echo "  name: $name"
  if [ -n "$ns" ]; then
    echo "  namespace: $ns"
  fi
  echo "  labels:"
  echo "    app.kubernetes.io/part-of: plugbus"
  echo "type: Opaque"
  echo "data:"
  while [ $# -gt 0 ]; do
    echo "  $1: $(b64 "$2")"
    shift 2
  done
}

secret plugbus-broker broker.creds "$dir/creds/broker.creds" signing.nk "$dir/signing.nk"
secret plugbus-admin admin.creds "$dir/creds/admin.creds"
secret plugbus-nats-auth plugbus-auth.conf "$dir/plugbus-auth.conf"
