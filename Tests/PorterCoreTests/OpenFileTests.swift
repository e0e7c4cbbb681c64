import PorterCore
import Testing

/// OpenFile=: systemd's PATH[:FDNAME[:OPTIONS]].
@Suite("OpenFile=")
struct OpenFileTests {
    @Test func fieldsDefaultsAndOptions() throws {
        #expect(try OpenFile.parse("/etc/secret") == OpenFile(path: "/etc/secret", name: "secret", access: .readWrite, graceful: false))
        #expect(try OpenFile.parse("/etc/secret:key:read-only,graceful") == OpenFile(path: "/etc/secret", name: "key", access: .readOnly, graceful: true))
        #expect(try OpenFile.parse("/var/log/x::append") == OpenFile(path: "/var/log/x", name: "x", access: .append, graceful: false))
        #expect(try OpenFile.parse("/a\\:b:n:truncate").path == "/a:b", "a backslash takes the colon as it is")
        for bad in ["relative", "/a/../b", "/a:b:read-only:more", "/a::append,truncate", "/a::graceful,graceful", "/a::sometimes",
                    "/a:bad name", "/a/", "/a\\"] {
            #expect(throws: ValueError.self, "\(bad)") { try OpenFile.parse(bad) }
        }
        let c = Configuration.load(files: [
            (name: "o.service", text: "[Service]\nExecStart=/bin/true\nOpenFile=/etc/a\nOpenFile=/etc/b:bee\nOpenFile=\nOpenFile=/etc/c\n"),
            (name: "o.socket", text: "[Socket]\nListenStream=7\n"),
        ], host: HostFacts())
        #expect(c.diagnostics.isEmpty, "\(c.diagnostics)")
        #expect(c.services[UnitName.parse("o.service")!]?.openFiles.map(\.name) == ["c"], "an empty value resets the list")
        let bad = Configuration.load(files: [(name: "o.service", text: "[Service]\nExecStart=/bin/true\nOpenFile=/etc/a::rw\n"),
                                             (name: "o.socket", text: "[Socket]\nListenStream=7\n")], host: HostFacts())
        #expect(bad.diagnostics.map(\.description).contains("o.service:3: OpenFile: unknown option 'rw', expected read-only, append, truncate or graceful"))
    }
}
