import Foundation

/// What is wrong with a job file: the file, the field (a path such as `disks[0].source`, nil when
/// the file as a whole is bad) and why. `vzError` is the `.badJobFile` error the agents report;
/// `check-job --json` reports the field on its own.
public struct JobFileError: Error, Equatable, Sendable, CustomStringConvertible {
    public var fileName: String
    public var field: String?
    public var reason: String

    public init(fileName: String, field: String?, reason: String) {
        self.fileName = fileName; self.field = field; self.reason = reason
    }

    /// `job.json: field 'blockSize': 1000 is not a power of two ...`
    public var message: String { field.map { "\(fileName): field '\($0)': \(reason)" } ?? "\(fileName): \(reason)" }
    public var description: String { message }
    public var vzError: VZError { VZError(.badJobFile, message) }

    /// Foundation's decoding errors, said in the job file's terms.
    init(decoding e: DecodingError, fileName: String) {
        func path(_ p: [CodingKey]) -> String {
            p.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().trimmingPrefix(".").description
        }
        self.fileName = fileName
        switch e {
        case let .keyNotFound(key, ctx):
            let parent = path(ctx.codingPath)
            field = parent.isEmpty ? key.stringValue : parent + "." + key.stringValue
            reason = "is required"
        case let .typeMismatch(_, ctx) where ctx.codingPath.isEmpty:
            field = nil
            reason = "the file must hold one JSON object"
        case let .typeMismatch(type, ctx):
            field = path(ctx.codingPath)
            reason = "expected \(JobFileError.typeName(type))"
        case let .valueNotFound(type, ctx):
            field = path(ctx.codingPath)
            reason = "expected \(JobFileError.typeName(type)), got null"
        case let .dataCorrupted(ctx) where ctx.codingPath.isEmpty:
            field = nil
            reason = "not valid JSON (\(ctx.underlyingError.map { "\($0)" } ?? ctx.debugDescription))"
        case let .dataCorrupted(ctx):
            field = path(ctx.codingPath)
            reason = ctx.debugDescription
        @unknown default:
            field = nil
            reason = "\(e)"
        }
    }

    static func typeName(_ t: Any.Type) -> String {
        switch t {
        case is String.Type: return "a string"
        case is Bool.Type: return "true or false"
        case is UInt16.Type, is UInt32.Type, is UInt64.Type, is Int.Type: return "a non-negative whole number"
        case is Double.Type: return "a number"
        default:
            let name = "\(t)"
            if name.hasPrefix("Array") { return "a list" }
            if name.hasPrefix("Dictionary") { return "an object" }
            return name
        }
    }
}

/// Any key of a JSON object: lets a type see the keys it does not know.
struct AnyCodingKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ name: String) { stringValue = name }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

extension Decoder {
    /// Refuses an object with a field that is not one of `Keys`: a typo (`"blocksize"`) or a
    /// field of a newer release must not be ignored silently. The error names the first unknown
    /// field with its path and lists the known ones.
    func refuseUnknownFields<Keys: CodingKey & CaseIterable>(_ keys: Keys.Type) throws {
        let known = Keys.allCases.map(\.stringValue)
        let unknown = try container(keyedBy: AnyCodingKey.self).allKeys.map(\.stringValue)
            .filter { !known.contains($0) }.sorted()
        guard let first = unknown.first else { return }
        var why = "unknown field (known: \(known.joined(separator: ", ")))"
        if unknown.count > 1 { why += "; also unknown: \(unknown.dropFirst().joined(separator: ", "))" }
        throw DecodingError.dataCorrupted(.init(codingPath: codingPath + [AnyCodingKey(first)], debugDescription: why))
    }
}

extension KeyedDecodingContainer {
    /// A whole number that fits `T`, decoded exactly (a capacity above 2^53 must not be rounded
    /// through Double). Only when that fails is the value read as a Double, to say why: Foundation
    /// reports a negative, fractional or too large integer as "not valid JSON", naming no field.
    func decodeWholeNumber<T: FixedWidthInteger & Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        if let v = try? decode(T.self, forKey: key) { return v }
        guard let d = try? decode(Double.self, forKey: key) else {
            throw DecodingError.typeMismatch(T.self, .init(codingPath: codingPath + [key], debugDescription: "not a number"))
        }
        let shown = d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : "\(d)"
        throw DecodingError.dataCorruptedError(forKey: key, in: self,
            debugDescription: "\(shown) is not exactly a whole number from \(T.min) to \(T.max)")
    }
}
