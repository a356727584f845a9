/// Which job-file fields are secret (Docs/job-file.md, "Secrets"): none of today's fields holds
/// one — `target.identity` is the *path* of the private key, whose content no agent copies
/// anywhere — but a field whose name says it holds a passphrase, password, token, secret,
/// credential or private key, at any depth (a later CBT or vCenter field), and any string that
/// holds a PEM private-key block, is replaced by `"<redacted>"` wherever a job file is shown
/// (support bundles).
public enum JobSecrets {
    public static let redacted = "<redacted>"
    static let secretWords = ["passphrase", "password", "passwd", "token", "secret", "credential", "privatekey", "private_key", "apikey"]

    public static func isSecret(fieldName: String) -> Bool {
        let k = fieldName.lowercased()
        return secretWords.contains { k.contains($0) }
    }

    public static func isSecret(value: String) -> Bool {
        value.contains("PRIVATE KEY-----") || value.contains("PuTTY-User-Key-File")
    }

    /// `json` (as JSONSerialization gives it) with every secret field and value replaced.
    public static func redact(_ json: Any) -> Any {
        if let o = json as? [String: Any] {
            var out: [String: Any] = [:]
            for (k, v) in o { out[k] = isSecret(fieldName: k) ? redacted : redact(v) }
            return out
        }
        if let a = json as? [Any] { return a.map(redact) }
        if let s = json as? String, isSecret(value: s) { return redacted }
        return json
    }
}
