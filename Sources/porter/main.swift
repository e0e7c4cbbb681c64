import Glibc
import PorterCore
import PorterDaemon
import PorterSys

let usage = """
    usage: porter run [--config-dir DIR]... [--xinetd PATH [--hosts-access DIR|none]] [--inetd-conf FILE]
                      [--log-level LEVEL] [--control PATH|none] [--daemon [--pidfile PATH]]
           porter check [--config-dir DIR]... [--xinetd PATH] [--inetd-conf FILE] [--show UNIT]...
           porter import xinetd PATH [--hosts-access DIR|none] | inetd FILE --output DIR [--services FILE] [--force]
           porter status [--json] [UNIT...]
           porter start UNIT | stop UNIT | reload [UNIT] | upgrade
           porter --help | --version

    porter listens on the sockets of the .socket units in DIR and starts
    the matching .service or @.service units when work arrives, as systemd
    socket activation and inetd do; .path units start them when files
    appear. --config-dir may be given more than once: the first DIR that
    holds a unit file wins, drop-ins (NAME.TYPE.d/*.conf) of all are merged.
    Default: /etc/porter, /run/porter, /usr/lib/porter (those that exist).

      run     run in the foreground, logging to stderr; SIGTERM or SIGINT
              stops the services and exits 0, SIGHUP reloads, SIGUSR2
              upgrades to the binary on disk
      check   read and validate, print each socket -> service pairing,
              where units came from and every problem; exits 1 when there
              is an error
      status  each unit's state, processes, counts and last exit (--json:
              the README's schema); exits 3 when porter cannot be reached
      start, stop  resume or pause activation of one unit (stop also stops
              a running Accept=no service)
      reload  read the configuration again and say how it went (exits 1
              when it was refused); with UNIT, reload that service
              (ReloadSignal= for Type=notify-reload, ExecReload=)
      upgrade re-execute the porter binary on disk in place, keeping every
              socket, process and count
      import  convert an xinetd configuration (xinetd.conf with its
              includedir, a file, or an xinetd.d directory) or an
              inetd.conf into unit files in DIR, and print what does not
              map exactly, with why

      --xinetd PATH, --inetd-conf FILE  also serve that configuration in
              place, converted at every start and reload (units of the
              same name in a --config-dir win)
      --services FILE  service names to ports (default: /etc/services)
      --hosts-access DIR  where xinetd's libwrap rules are, hosts.allow and
              hosts.deny (default: /etc; none: not read)

      --control PATH  the control socket (default: /run/porter/control as
              root, $XDG_RUNTIME_DIR/porter/control otherwise); `none` for
              run: no control socket
      --show UNIT  print the files that make up UNIT, as systemctl cat
      --log-level  debug, info (default), warning or error
      --daemon  detach (double fork, setsid, chdir /), exit 0 once every
              socket is bound, non-zero with the error otherwise
      --pidfile PATH  write porter's pid there atomically and hold a lock
              on it (a second porter on the same pidfile refuses to start)

    """

func fail(_ message: String) -> Never {
    _ = try? FileDescriptor.standardError.write("porter: \(message)\n\(usage)")
    exit(2)
}

// fds a parent left open (without close-on-exec) are nobody's business
// here: porter closes them before it opens anything of its own, rather
// than keep them for as long as it runs. Those it was handed on purpose
// (LISTEN_FDS, an upgrade's state) are kept.
Processes.closeInherited(keeping: Inheritance.keptDescriptors())
Processes.ensureStandardFDs()
// Under systemd, log with priorities journald keeps.
Log.journalStream = Log.stderrIsJournal(getenv("JOURNAL_STREAM").map { String(cString: $0) })
Log.journald = Log.journalStream
// What `porter upgrade` executes: the path porter was started by (so a
// symlink an admin moves to a new version is followed), made absolute now,
// before --daemon changes directory; /proc/self/exe for a bare name.
Commands.executable = {
    let first = CommandLine.arguments.first ?? ""
    if first.hasPrefix("/") { return first }
    if first.contains("/") {
        var buf = [CChar](repeating: 0, count: 4096)
        if getcwd(&buf, buf.count) != nil { return String(cString: buf) + "/" + first }
    }
    return Processes.executablePath()
}()
var args = Array(CommandLine.arguments.dropFirst())
guard let command = args.first else { fail("missing command") }
args.removeFirst()

/// Options of the form --name VALUE or --name=VALUE, and the words left.
struct Parsed {
    var values: [String: [String]] = [:]
    var flags: Set<String> = []
    var words: [String] = []
    func last(_ name: String) -> String? { values[name]?.last }
}

func parse(_ args: [String], values: Set<String>, flags: Set<String>) -> Parsed {
    var p = Parsed()
    var rest = args[...]
    while let a = rest.first {
        rest = rest.dropFirst()
        guard a.hasPrefix("-"), a != "-" else {
            p.words.append(a)
            continue
        }
        var name = a
        var value: String? = nil
        if let eq = a.firstIndex(of: "="), a.hasPrefix("--") {
            name = String(a[..<eq])
            value = String(a[a.index(after: eq)...])
        }
        if name == "-c" { name = "--config-dir" }
        if flags.contains(name) {
            guard value == nil else { fail("\(name) takes no value") }
            p.flags.insert(name)
        } else if values.contains(name) {
            if value == nil {
                guard let v = rest.first else { fail("\(name) needs a value") }
                rest = rest.dropFirst()
                value = v
            }
            p.values[name, default: []].append(value!)
        } else {
            fail("unknown option '\(a)' for \(command)")
        }
    }
    return p
}

/// The directories and the configurations read in place.
func place(_ p: Parsed) -> Commands.Place {
    Commands.Place(p.values["--config-dir"] ?? [], xinetd: p.last("--xinetd"), inetdConf: p.last("--inetd-conf"),
                   servicesFile: p.last("--services"), hostsAccess: hostsAccess(p))
}

/// `--hosts-access DIR`, `none`, or /etc.
func hostsAccess(_ p: Parsed) -> String? {
    guard let v = p.last("--hosts-access") else { return "/etc" }
    return v == "none" ? nil : v
}

func logLevel(_ s: String) -> LogLevel {
    switch s {
    case "debug": return .debug
    case "info": return .info
    case "warning": return .warning
    case "error": return .error
    default: fail("unknown log level '\(s)', expected debug, info, warning or error")
    }
}

switch command {
case "--help", "-h", "help":
    _ = try? FileDescriptor.standardOutput.write(usage)
    exit(0)
case "--version", "-V", "version":
    _ = try? FileDescriptor.standardOutput.write("porter \(Commands.version)\n")
    exit(0)
case "run":
    let p = parse(args, values: ["--config-dir", "--log-level", "--control", "--pidfile", "--xinetd", "--inetd-conf", "--services", "--hosts-access"],
                  flags: ["--daemon"])
    guard p.words.isEmpty else { fail("unexpected argument '\(p.words[0])' for run") }
    var options = Commands.RunOptions()
    options.logLevel = p.last("--log-level").map(logLevel)
    options.control = p.last("--control")
    options.pidFile = p.last("--pidfile")
    options.daemon = p.flags.contains("--daemon")
    if options.pidFile != nil && !(options.pidFile!.hasPrefix("/")) { fail("--pidfile needs an absolute path") }
    exit(Commands.run(place(p), options))
case "check":
    let p = parse(args, values: ["--config-dir", "--show", "--xinetd", "--inetd-conf", "--services", "--hosts-access"], flags: [])
    guard p.words.isEmpty else { fail("unexpected argument '\(p.words[0])' for check") }
    exit(Commands.check(place(p), show: p.values["--show"] ?? []))
case "import":
    let p = parse(args, values: ["--output", "--services", "--hosts-access"], flags: ["--force"])
    guard p.words.count == 2, let kind = LegacyConfig.Kind(rawValue: p.words[0]) else {
        fail("import needs xinetd PATH or inetd FILE")
    }
    guard let output = p.last("--output") else { fail("import needs --output DIR") }
    exit(Commands.importConfig(kind, p.words[1], output: output, servicesFile: p.last("--services"), hostsAccess: hostsAccess(p),
                               force: p.flags.contains("--force")))
case "status", "start", "stop", "reload", "upgrade":
    let p = parse(args, values: ["--config-dir", "--control"], flags: ["--json"])
    let verb = ControlRequest.Verb(rawValue: command)!
    let request = ControlRequest(verb, p.words)
    // The daemon checks the same; a bad request is a usage error here.
    do { _ = try ControlRequest.parse(Array(request.line.utf8.dropLast())) } catch { fail(error.description) }
    let place = p.values["--config-dir"].map { Commands.Place($0) }
    exit(ControlClient.run(request, control: p.last("--control"), place: place, json: p.flags.contains("--json")))
default:
    fail("unknown command '\(command)'")
}
