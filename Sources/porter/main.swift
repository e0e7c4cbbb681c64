import Glibc
import PorterCore
import PorterDaemon
import PorterSys

let usage = """
    usage: porter run [--config-dir DIR]... [--log-level LEVEL]
           porter check [--config-dir DIR]... [--show UNIT]...
           porter --help | --version

    porter listens on the sockets of the .socket units in DIR and starts
    the matching .service or @.service units when work arrives, as systemd
    socket activation and inetd do; .path units start them when files
    appear. --config-dir may be given more than once: the first DIR that
    holds a unit file wins, drop-ins (NAME.TYPE.d/*.conf) of all are merged.
    Default: /etc/porter, /run/porter, /usr/lib/porter (those that exist).

      run     run in the foreground, logging to stderr; SIGTERM or SIGINT
              stops the services and exits 0, SIGHUP reloads
      check   read and validate, print each socket -> service pairing,
              where units came from and every problem; exits 1 when there
              is an error
      --show UNIT  print the files that make up UNIT, as systemctl cat
      --log-level  debug, info (default), warning or error

    """

func fail(_ message: String) -> Never {
    _ = try? FileDescriptor.standardError.write("porter: \(message)\n\(usage)")
    exit(2)
}

// fds a parent left open (without close-on-exec) are nobody's business
// here: porter closes them before it opens anything of its own, rather
// than keep them for as long as it runs.
Processes.closeInherited()
Processes.ensureStandardFDs()
// Under systemd, log with priorities journald keeps.
Log.journald = Log.stderrIsJournal(getenv("JOURNAL_STREAM").map { String(cString: $0) })
var args = Array(CommandLine.arguments.dropFirst())
guard let command = args.first else { fail("missing command") }
args.removeFirst()
switch command {
case "--help", "-h", "help":
    _ = try? FileDescriptor.standardOutput.write(usage)
    exit(0)
case "--version", "-V", "version":
    _ = try? FileDescriptor.standardOutput.write("porter \(Commands.version)\n")
    exit(0)
case "run", "check":
    var directories: [String] = []
    var show: [String] = []
    while let a = args.first {
        args.removeFirst()
        var value: String? = nil
        var flag = a
        if let eq = a.firstIndex(of: "="), a.hasPrefix("--") {
            flag = String(a[..<eq])
            value = String(a[a.index(after: eq)...])
        }
        func next() -> String {
            if let value { return value }
            guard let v = args.first else { fail("\(flag) needs a value") }
            args.removeFirst()
            return v
        }
        switch flag {
        case "--config-dir", "-c":
            directories.append(next())
        case "--show" where command == "check":
            show.append(next())
        case "--log-level" where command == "run":
            switch next() {
            case "debug": Log.threshold = .debug
            case "info": Log.threshold = .info
            case "warning": Log.threshold = .warning
            case "error": Log.threshold = .error
            case let other: fail("unknown log level '\(other)', expected debug, info, warning or error")
            }
        default:
            fail("unknown option '\(a)' for \(command)")
        }
    }
    let place = Commands.Place(directories)
    exit(command == "run" ? Commands.run(place) : Commands.check(place, show: show))
default:
    fail("unknown command '\(command)'")
}
