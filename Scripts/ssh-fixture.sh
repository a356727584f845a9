# Sourced by demo.sh (and usable by hand): a private OpenSSH server on 127.0.0.1 configured with
# the appliance's own drop-in (Appliance/sshd_config.d/vzrepl.conf) and authorized_keys template,
# with generated host and user keys. Only the keys, the user, the port and the paths differ from
# the target VA.
#   start_sshd DIR "TARGET COMMAND"   sets SSHD_PORT SSHD_USER SSHD_CLIENT_KEY SSHD_FINGERPRINT SSHD_PID
#   stop_sshd
_fixture_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

start_sshd() {
  local dir=$1 command=$2
  mkdir -p "$dir" /run/sshd
  chmod 700 "$dir"
  ssh-keygen -q -t ed25519 -N '' -f "$dir/host_ed25519" -C vzrepl-demo-host
  ssh-keygen -q -t ed25519 -N '' -f "$dir/client_ed25519" -C vzrepl-demo-source
  SSHD_USER=$(id -un)
  SSHD_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # The appliance's authorized_keys line, with this fixture's agent command and key.
  sed -e "s#/usr/lib/vzrepl/vzrepl-target serve --stdio --root @ROOT@#${command//#/\\#}#" \
      -e "s#@PUBKEY@#$(cat "$dir/client_ed25519.pub")#" "$_fixture_repo/Appliance/authorized_keys.template" \
      | grep -v '^#' > "$dir/authorized_keys"
  {
    echo "ListenAddress 127.0.0.1"
    echo "Port $SSHD_PORT"
    echo "PidFile $dir/sshd.pid"
    echo "AuthorizedKeysFile $dir/authorized_keys"
    echo "StrictModes no"
    echo "UsePAM no"
    # The drop-in, with the host key, the user and root login adapted to this fixture.
    sed -e "s#^HostKey .*#HostKey $dir/host_ed25519#" -e "s#^AllowUsers .*#AllowUsers $SSHD_USER#" \
        -e "s#^PermitRootLogin .*#PermitRootLogin prohibit-password#" \
        "$_fixture_repo/Appliance/sshd_config.d/vzrepl.conf"
  } > "$dir/sshd_config"
  /usr/sbin/sshd -t -f "$dir/sshd_config"
  /usr/sbin/sshd -D -e -f "$dir/sshd_config" 2>"$dir/sshd.log" &
  SSHD_PID=$!
  echo "$SSHD_PID" > "$dir/sshd.pid.fixture"
  for _ in $(seq 1 50); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $SSHD_PORT), 0.2)" 2>/dev/null && break
    sleep 0.1
  done
  SSHD_CLIENT_KEY=$dir/client_ed25519
  SSHD_FINGERPRINT=$(ssh-keygen -lf "$dir/host_ed25519.pub" | awk '{print $2}')
  export SSHD_PORT SSHD_USER SSHD_CLIENT_KEY SSHD_FINGERPRINT SSHD_PID
}

stop_sshd() {
  [ -n "${SSHD_PID:-}" ] && kill "$SSHD_PID" 2>/dev/null && wait "$SSHD_PID" 2>/dev/null
  SSHD_PID=
}
