#!/bin/sh
# The target VA image recipe: run as root on a Debian 12 appliance image (or chroot) after
# copying the built vzrepl-target next to this script. Idempotent.
#   sh install-target-va.sh /path/to/vzrepl-target "ssh-ed25519 AAAA... vzrepl@source-va" [/srv/replicas]
set -eu
BIN=${1:?path to the built vzrepl-target}
PUBKEY=${2:?the source VA public key line}
ROOT=${3:-/srv/replicas}
HERE=$(cd "$(dirname "$0")" && pwd)

apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server libssh2-1 liblz4-1 libssl3 logrotate

id vzrepl >/dev/null 2>&1 || useradd --system --create-home --home-dir /var/lib/vzrepl --shell /bin/sh vzrepl
install -d -o vzrepl -g vzrepl -m 0750 "$ROOT" /var/log/vzrepl
install -d -m 0755 /usr/lib/vzrepl
install -m 0755 "$BIN" /usr/lib/vzrepl/vzrepl-target

install -m 0644 "$HERE/sshd_config.d/vzrepl.conf" /etc/ssh/sshd_config.d/vzrepl.conf
[ -f /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
install -d -o vzrepl -g vzrepl -m 0700 /var/lib/vzrepl/.ssh
sed -e "s#@ROOT@#$ROOT#g" -e "s#@PUBKEY@#$PUBKEY#g" "$HERE/authorized_keys.template" | grep -v '^#' \
  > /var/lib/vzrepl/.ssh/authorized_keys
chown vzrepl:vzrepl /var/lib/vzrepl/.ssh/authorized_keys
chmod 0600 /var/lib/vzrepl/.ssh/authorized_keys

sed "s#^VZREPL_ROOT=.*#VZREPL_ROOT=$ROOT#" "$HERE/default-vzrepl" > /etc/default/vzrepl
install -m 0644 "$HERE/systemd/vzrepl-recover.service" /etc/systemd/system/vzrepl-recover.service
install -m 0644 "$HERE/logrotate.d/vzrepl" /etc/logrotate.d/vzrepl
sshd -t
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable vzrepl-recover.service
  systemctl reload ssh || systemctl restart ssh
fi
echo "target VA ready: give the controller this host key pin:"
ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub | awk '{print $2}'
