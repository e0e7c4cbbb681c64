/// The request head of porter's metrics endpoint: the request line and
/// the header lines up to the empty line (RFC 9112). Pure and bounded:
/// 8 KiB at most, GET and HEAD only, the rest refused with the status a
/// client should see. Headers are checked to be text and otherwise
/// ignored: one answer per connection, then porter closes it.
public struct HTTPRequest: Equatable, Sendable {
    public var method: String
    /// The path without its query string.
    public var path: String

    public static let maxHead = 8192

    public init(method: String, path: String) {
        self.method = method
        self.path = path
    }

    public struct Refusal: Error, Equatable, CustomStringConvertible {
        public var status: Int
        public var reason: String
        public var description: String { "\(status) \(reason)" }
    }

    /// Where the head ends in what arrived so far (the index just past the
    /// empty line), nil while incomplete; throws once it is too long.
    public static func headEnd(_ bytes: [UInt8]) throws(Refusal) -> Int? {
        var i = 0
        while i < bytes.count {
            if bytes[i] == 0x0A {
                if i + 1 < bytes.count, bytes[i + 1] == 0x0A { return i + 2 }
                if i + 2 < bytes.count, bytes[i + 1] == 0x0D, bytes[i + 2] == 0x0A { return i + 3 }
            }
            i += 1
        }
        if bytes.count >= maxHead { throw Refusal(status: 431, reason: "Request Header Fields Too Large") }
        return nil
    }

    public static func parse(_ head: some Collection<UInt8>) throws(Refusal) -> HTTPRequest {
        let bytes = Array(head)
        guard bytes.count <= maxHead else { throw Refusal(status: 431, reason: "Request Header Fields Too Large") }
        if TextCheck.problem(bytes[...]) != nil { throw Refusal(status: 400, reason: "Bad Request") }
        let lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false).map { line -> ArraySlice<UInt8> in
            line.last == 0x0D ? line.dropLast() : line
        }
        guard let first = lines.first, !first.isEmpty else { throw Refusal(status: 400, reason: "Bad Request") }
        let parts = first.split(separator: 0x20, omittingEmptySubsequences: false)
        guard parts.count == 3 else { throw Refusal(status: 400, reason: "Bad Request") }
        let method = String(decoding: parts[0], as: UTF8.self)
        let target = String(decoding: parts[1], as: UTF8.self)
        let version = String(decoding: parts[2], as: UTF8.self)
        guard version == "HTTP/1.1" || version == "HTTP/1.0" else {
            throw Refusal(status: 505, reason: "HTTP Version Not Supported")
        }
        guard !method.isEmpty, method.utf8.allSatisfy({ $0 >= 0x41 && $0 <= 0x5A }) else { throw Refusal(status: 400, reason: "Bad Request") }
        guard target.hasPrefix("/"), !target.utf8.contains(where: { $0 < 0x21 || $0 == 0x7F }) else {
            throw Refusal(status: 400, reason: "Bad Request")
        }
        for line in lines.dropFirst() where !line.isEmpty {
            // A header line is "name: value"; a line with control bytes or
            // without a colon is malformed (obsolete folding included).
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex,
                  !line[..<colon].contains(where: { $0 <= 0x20 || $0 == 0x7F }),
                  !line.contains(where: { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7F }) else {
                throw Refusal(status: 400, reason: "Bad Request")
            }
        }
        guard method == "GET" || method == "HEAD" else { throw Refusal(status: 405, reason: "Method Not Allowed") }
        let path = String(target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0])
        return HTTPRequest(method: method, path: path)
    }

    /// A whole response with `Connection: close`; HEAD gets the headers only.
    public static func response(status: Int, reason: String, contentType: String, body: String, head: Bool = false) -> [UInt8] {
        let bodyBytes = Array(body.utf8)
        let header = "HTTP/1.1 \(status) \(reason)\r\nContent-Type: \(contentType)\r\nContent-Length: \(bodyBytes.count)\r\nConnection: close\r\n\r\n"
        return Array(header.utf8) + (head ? [] : bodyBytes)
    }
}
