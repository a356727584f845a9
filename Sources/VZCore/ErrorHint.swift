/// What each error kind means and what to check next: the one table behind the `hint=` of every
/// error log line, the `hint` of the `error` event, and the troubleshooting table of
/// Docs/operations.md (a test checks that the two agree). One line each, for a field engineer.
extension VZError.Kind {
    public var meaning: String { ErrorHint.table[self]!.meaning }
    public var hint: String { ErrorHint.table[self]!.hint }
}

public enum ErrorHint {
    /// Every kind has an entry (the switch makes the compiler check it).
    static let table: [VZError.Kind: (meaning: String, hint: String)] = {
        var t: [VZError.Kind: (meaning: String, hint: String)] = [:]
        for k in VZError.Kind.allCases { t[k] = entry(k) }
        return t
    }()

    private static func entry(_ kind: VZError.Kind) -> (meaning: String, hint: String) {
        switch kind {
        case .badJobFile:
            return ("the job file cannot be read or is invalid",
                    "run `vzrepl-source check-job --job FILE`; the message names the field (Docs/job-file.md)")
        case .badArgument:
            return ("a command-line option or argument is wrong",
                    "check the command line against `--help`; the message names the option")
        case .sourceIO:
            return ("a source disk or VMDK could not be opened or read",
                    "check that the source path exists and is readable (snapshot attached, permissions, dmesg for I/O errors)")
        case .sourceChanged:
            return ("a source disk changed while it was being read",
                    "run the pass again from a stable snapshot; nothing was committed from the changing data")
        case .hardwareChanged:
            return ("the VM's hardware (a disk's capacity) differs from the job or the replica",
                    "reconfigure the replica the same way (`vzrepl-target resize`) and update capacityBytes in the job file")
        case .sourceUnsupported:
            return ("the source disk is in a format the agent does not read (qcow2, VHD, VHDX, VDI, RDM)",
                    "convert the disk to VMDK or raw, or point the job at a supported disk")
        case .protocolViolation:
            return ("the peer sent a message out of order or malformed, or a name the target refuses",
                    "check both agents' versions (`--version`) and the message; a name problem names the job or disk field")
        case .corruptFrame:
            return ("a frame failed its checks (bad header, lz4 payload that does not decompress to its length)",
                    "check the link and both agents' versions; re-run the pass; persistent: collect both support bundles")
        case .hashMismatch:
            return ("a block's data did not match its SHA-256 after decompression on the target",
                    "check the source host's memory and the link; re-run the pass; the block was not written")
        case .versionMismatch:
            return ("the two agents speak no common protocol version",
                    "upgrade the older agent; `vzrepl-source --version` and `vzrepl-target --version` print the protocol")
        case .connectionRefused:
            return ("the target's sshd refused the TCP connection",
                    "check target.host/port in the job, that sshd runs on the target VA, and the firewall")
        case .connectionLost:
            return ("the connection or the peer agent went away mid-pass",
                    "check the network and the other side's log for the same pass= id; the pass resumes or rolls back by itself")
        case .timeout:
            return ("the peer or the link was silent or made no progress for too long",
                    "check the link and the other side's log for the same pass= id; raise the timeouts only for slow links")
        case .dnsFailure:
            return ("the target's host name does not resolve",
                    "check target.host in the job and the source VA's DNS settings")
        case .hostKeyMismatch:
            return ("the target's SSH host key is not the pinned one",
                    "verify the target VA's key (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`) before updating the pin in the job")
        case .hostKeyUnknown:
            return ("the target's host key is not in the known_hosts file or no pin is configured",
                    "add the target's host key fingerprint to the job (target.hostKeySHA256) or to its known_hosts file")
        case .authenticationFailed:
            return ("sshd did not accept the source VA's key",
                    "check the key pair in the job and the target's authorized_keys line (Appliance/authorized_keys.template)")
        case .noAcceptableCipher:
            return ("the SSH peers share no allowed cipher, MAC or key exchange",
                    "check the target's sshd configuration (Appliance/sshd_config.d/vzrepl.conf): aes256-gcm@openssh.com, or aes256-ctr with hmac-sha2-256, must be allowed")
        case .transport:
            return ("an SSH or transport-level failure",
                    "check the target's sshd log (journalctl -u ssh) and the message; re-run with --verbose")
        case .targetUnavailable:
            return ("the target agent could not be started or exited before its banner",
                    "check the forced command in authorized_keys and run `vzrepl-target --version` on the target VA")
        case .targetRefused:
            return ("the target refused the request (an unrecovered pass, a replica of another size, a map too large)",
                    "read the message and run `vzrepl-target status --root ROOT` on the target VA")
        case .corruptMap:
            return ("a .vzmap failed its checks",
                    "nothing to repair by hand: the next pass rebuilds the map by hashing the replica; `vzrepl-target verify` checks it")
        case .corruptJournal:
            return ("a .vzundo journal is damaged and cannot be used for a rollback",
                    "move DISK.vzundo and DISK.vzmap aside (Docs/operations.md, Rolling back); the next pass re-hashes the replica")
        case .replicaIO:
            return ("reading or writing the replica or a working file on the target failed",
                    "check the target datastore (dmesg, mount options, permissions); the pass was rolled back")
        case .noSpace:
            return ("the target datastore is full",
                    "free space on the target datastore (`df` in the support bundle); the pass was rolled back")
        case .pathOutsideRoot:
            return ("a name or a file on the target could lead outside the datastore root (symlink, hard link, '..')",
                    "remove the link named in the message from the datastore (Docs/operations.md, What the agent refuses to touch)")
        case .locked:
            return ("another session holds the disk's lock",
                    "wait for the other pass to end, or check `vzrepl-target status` for a stuck session; raise --lock-wait if passes overlap")
        case .internal:
            return ("an unexpected failure inside an agent",
                    "collect the support bundles of both sides (`diagnose`) and report it with the log lines of this pass= id")
        }
    }
}
