import PorterCore
import Testing

/// Which files make up a unit across config directories (systemd.unit(5)).
@Suite("unit sources: precedence, drop-ins, masking, aliases")
struct UnitSourcesTests {
    typealias L = UnitSources.Listing

    func unit(_ s: UnitSources, _ name: String) -> UnitSources.Unit? { s.units[UnitName.parse(name)!] }

    @Test func firstDirectoryWins() {
        let s = UnitSources.resolve([
            L(path: "/etc/porter", units: ["a.socket": .file]),
            L(path: "/run/porter", units: ["a.socket": .file, "b.socket": .file]),
            L(path: "/usr/lib/porter", units: ["b.socket": .file, "c.socket": .file]),
        ])
        #expect(unit(s, "a.socket")?.file.path == "/etc/porter/a.socket")
        #expect(unit(s, "b.socket")?.file.path == "/run/porter/b.socket")
        #expect(unit(s, "c.socket")?.file.path == "/usr/lib/porter/c.socket")
        #expect(s.diagnostics.isEmpty)
    }

    @Test(arguments: [
        // unit, drop-in directories that apply, least specific first
        ("foo.service", ["service.d", "foo.service.d"]),
        ("foo-bar-baz.service", ["service.d", "foo-.service.d", "foo-bar-.service.d", "foo-bar-baz.service.d"]),
        ("foo@.service", ["service.d", "foo@.service.d"]),
        ("foo@x.service", ["service.d", "foo@.service.d", "foo@x.service.d"]),
        ("a-b@x.socket", ["socket.d", "a-.socket.d", "a-b@.socket.d", "a-b@x.socket.d"]),
        ("-x.path", ["path.d", "-x.path.d"]),
    ])
    func dropInDirectories(unit: String, dirs: [String]) {
        #expect(UnitSources.dropInDirectories(of: UnitName.parse(unit)!) == dirs)
    }

    @Test func dropInsMergeAcrossDirectoriesInLexicalOrder() {
        let s = UnitSources.resolve([
            L(path: "/etc", dropIns: ["foo-bar.service.d": ["20-b.conf": .file, "10-a.conf": .file, "notes.txt": .file]]),
            L(path: "/lib", units: ["foo-bar.service": .file],
              dropIns: ["foo-bar.service.d": ["10-a.conf": .file, "15-lib.conf": .file],
                        "service.d": ["05-all.conf": .file, "20-b.conf": .file],
                        "foo-.service.d": ["12-prefix.conf": .file]]),
        ])
        let u = unit(s, "foo-bar.service")!
        // 10-a.conf from /etc hides /lib's; 20-b.conf of the unit's own
        // directory hides the type-wide one; .txt is not a drop-in.
        #expect(u.dropIns.map(\.path) == ["/lib/service.d/05-all.conf", "/etc/foo-bar.service.d/10-a.conf",
                                          "/lib/foo-.service.d/12-prefix.conf", "/lib/foo-bar.service.d/15-lib.conf",
                                          "/etc/foo-bar.service.d/20-b.conf"])
        #expect(u.file.path == "/lib/foo-bar.service")
    }

    @Test func aDropInLinkedToDevNullMasksTheOnesBelow() {
        let s = UnitSources.resolve([
            L(path: "/etc", dropIns: ["a.socket.d": ["10.conf": .masked]]),
            L(path: "/lib", units: ["a.socket": .file], dropIns: ["a.socket.d": ["10.conf": .file, "20.conf": .file]]),
        ])
        #expect(unit(s, "a.socket")?.dropIns.map(\.path) == ["/lib/a.socket.d/20.conf"])
    }

    @Test func maskingHidesTheUnitInEveryDirectoryBelow() {
        let s = UnitSources.resolve([
            L(path: "/etc", units: ["a.socket": .masked]),
            L(path: "/lib", units: ["a.socket": .file, "b.socket": .file], dropIns: ["a.socket.d": ["x.conf": .file]]),
        ])
        #expect(unit(s, "a.socket") == nil)
        #expect(s.masked[UnitName.parse("a.socket")!] == "/etc/a.socket")
        #expect(unit(s, "b.socket") != nil)
        #expect(s.diagnostics.isEmpty)  // the masked unit's drop-ins are no orphans
    }

    @Test func aSymlinkWithTheSameNameIsFollowed() {
        let s = UnitSources.resolve([L(path: "/etc", units: ["uuidd.socket": .link("/lib/systemd/system/uuidd.socket")])])
        let u = unit(s, "uuidd.socket")!
        #expect(u.file.name == "uuidd.socket")
        #expect(u.file.linkTarget == "/lib/systemd/system/uuidd.socket")
    }

    @Test func anAliasResolvesToItsTarget() {
        // Only the link: the unit is loaded under the target's name from it.
        let s = UnitSources.resolve([L(path: "/etc", units: ["print.socket": .link("/lib/cups.socket")])])
        #expect(unit(s, "print.socket") == nil)
        #expect(unit(s, "cups.socket")?.file.name == "print.socket")
        #expect(unit(s, "cups.socket")?.aliases == ["print.socket"])
        // The target's own file wins over the link.
        let t = UnitSources.resolve([
            L(path: "/etc", units: ["print.socket": .link("cups.socket")]),
            L(path: "/lib", units: ["cups.socket": .file]),
        ])
        #expect(unit(t, "cups.socket")?.file.path == "/lib/cups.socket")
        #expect(t.units.count == 1)
        #expect(t.notes == ["print.socket: an alias of cups.socket"])
    }

    @Test func instancesOfTemplates() {
        let s = UnitSources.resolve([
            L(path: "/etc", units: ["sshd@a.socket": .link("/lib/sshd@.socket"), "web@x.service": .link("web@.service")],
              dropIns: ["sshd@a.service.d": ["port.conf": .file], "sshd@.service.d": ["all.conf": .file]]),
            L(path: "/lib", units: ["sshd@.socket": .file, "sshd@.service": .file, "web@.service": .file]),
        ])
        // The instance socket reads the template's file; the template socket is not a unit.
        #expect(unit(s, "sshd@a.socket")?.file.path == "/lib/sshd@.socket")
        #expect(unit(s, "sshd@.socket") == nil)
        // The socket instance brings its service instance, with the template's
        // and its own drop-ins, least specific first.
        #expect(unit(s, "sshd@a.service")?.file.path == "/lib/sshd@.service")
        #expect(unit(s, "sshd@a.service")?.dropIns.map(\.name) == ["sshd@.service.d/all.conf", "sshd@a.service.d/port.conf"])
        #expect(unit(s, "web@x.service")?.file.path == "/lib/web@.service")
        #expect(s.notes.contains("web@x.service: an instance of web@.service"))
        #expect(s.diagnostics.isEmpty, "\(s.diagnostics)")
    }

    @Test func anAliasOfAnotherKindIsAnError() {
        let s = UnitSources.resolve([L(path: "/etc", units: ["a.socket": .link("/lib/a.service")])])
        #expect(s.units.isEmpty)
        #expect(s.diagnostics.map(\.description) == ["a.socket: an alias of a.service, which is not a unit of the same kind; expected a link to a .socket unit"])
    }

    @Test func aDropInForAMissingUnitIsAWarning() {
        let s = UnitSources.resolve([
            L(path: "/etc", units: ["t@.service": .file],
              dropIns: ["gone.socket.d": ["x.conf": .file], "service.d": [:], "foo-.service.d": [:], "t@one.service.d": [:]]),
        ])
        #expect(s.diagnostics.map(\.description) == ["/etc/gone.socket.d: a drop-in directory for gone.socket, which does not exist; ignored"])
    }

    @Test func invalidNamesAreErrors() {
        let s = UnitSources.resolve([L(path: "/etc", units: ["bad name.socket": .file])])
        #expect(s.units.isEmpty)
        #expect(s.diagnostics.first?.severity == .error)
    }

    /// The merged unit: later assignments override, an empty one resets a
    /// list, and each message names the file and line it is about.
    @Test func mergedUnitsResetListsAndNameTheirFiles() {
        var units = UnitSet()
        units.add(UnitName.parse("ssh.socket")!, files: [
            ("ssh.socket", Array("[Socket]\nListenStream=22\nAccept=yes\nBacklog=5\n".utf8)),
            ("ssh.socket.d/port.conf", Array("[Socket]\nListenStream=\nListenStream=127.0.0.1:8022\nBacklog=50\nBogus=1\n".utf8)),
            ("ssh.socket.d/zz.conf", Array("[Socket]\nNoDelay=maybe\n".utf8)),
        ], host: HostFacts())
        let d = units.diagnostics.map(\.description)
        #expect(d.contains("ssh.socket.d/port.conf:5: Bogus: unknown key in [Socket] ignored"))
        #expect(d.contains { $0.hasPrefix("ssh.socket.d/zz.conf:2: NoDelay: ") })
        // NoDelay= was invalid: the unit is refused, as a single file would be.
        #expect(units.sockets.isEmpty)

        var ok = UnitSet()
        ok.add(UnitName.parse("ssh.socket")!, files: [
            ("ssh.socket", Array("[Socket]\nListenStream=22\nAccept=yes\nBacklog=5\n".utf8)),
            ("ssh.socket.d/port.conf", Array("[Socket]\nListenStream=\nListenStream=127.0.0.1:8022\nBacklog=50\n".utf8)),
        ], host: HostFacts())
        let s = ok.sockets[UnitName.parse("ssh.socket")!]!
        #expect(s.listens.map(\.description) == ["ListenStream=127.0.0.1:8022"])
        #expect(s.backlog == 50)
        #expect(s.sources.at(s.listens[0].line) == "ssh.socket.d/port.conf:3")
    }

    @Test func aDropInChangesTheFingerprint() {
        func print(_ dropIn: String?) -> UInt64 {
            var units = UnitSet()
            var files: [(name: String, bytes: [UInt8])] = [("a.socket", Array("[Socket]\nListenStream=7\n".utf8))]
            if let dropIn { files.append(("a.socket.d/x.conf", Array(dropIn.utf8))) }
            units.add(UnitName.parse("a.socket")!, files: files, host: HostFacts())
            return units.sockets.values.first!.fingerprint
        }
        #expect(print(nil) != print("[Socket]\nBacklog=9\n"))
        #expect(print("[Socket]\nBacklog=9\n") != print("[Socket]\nBacklog=10\n"))
        #expect(print("[Socket]\nBacklog=9\n") == print("[Socket]\nBacklog=9\n"))
    }
}
