/// The checks that need the whole unit, after every line was read.
extension ServiceConfig {
    mutating func validate(_ r: inout UnitReader, _ specifiers: Specifiers) {
        do { try process.finish() } catch {
            r.diagnostics.error(nil, "CPUSchedulingPriority", error.message)
        }
        guard let exec else {
            // ProxyTo= alone (porter's): a relay to an address something
            // else serves, xinetd's `redirect`; there is nothing to start.
            if proxyTo != nil {
                if name.isTemplate {
                    r.diagnostics.error(proxyLine, "ProxyTo", "is for NAME.service (Accept=no): porter relays to one backend")
                }
                if commands.values.contains(where: { !$0.isEmpty }) {
                    r.diagnostics.error(nil, nil, "ExecStartPre=, ExecStop= and the like need an ExecStart=; a ProxyTo= without one only relays")
                }
                return
            }
            r.diagnostics.error(nil, nil, "no ExecStart= line; nothing to run")
            return
        }
        if type != .oneshot && (commands[.start]?.count ?? 0) > 1 {
            r.diagnostics.error(extraStartLine, "ExecStart", "more than one command, which only Type=oneshot may have (systemd's rule); expected one ExecStart= or Type=oneshot")
        }
        if name.isTemplate && type == .forking {
            r.diagnostics.error(nil, "Type", "Type=forking is for NAME.service (Accept=no); a per-connection instance or per-file job is followed through the one process porter starts, expected simple, exec or oneshot")
        }
        if name.isTemplate && remainAfterExit {
            r.diagnostics.warning(nil, "RemainAfterExit", "ignored for per-connection instances and per-file jobs: each is over when its process exits")
        }
        if let target = proxyTo {
            if name.isTemplate {
                r.diagnostics.error(proxyLine, "ProxyTo", "is for NAME.service (Accept=no): porter relays to one backend; a per-connection instance gets its connection itself")
            }
            if type == .oneshot {
                r.diagnostics.error(proxyLine, "ProxyTo", "needs a backend that keeps running, not Type=oneshot; expected simple, exec, notify or forking")
            }
            if standardInput == .socket || standardOutput == .socket || explicitError == .socket {
                r.diagnostics.error(proxyLine, "ProxyTo", "porter keeps the sockets of a proxied service (it relays to \(target)); StandardInput=socket has none to give")
            }
            if !sockets.isEmpty {
                r.diagnostics.error(proxyLine, "ProxyTo", "a proxied service receives no sockets: porter keeps them and relays to \(target); drop Sockets=")
            }
        } else {
            if proxyProtocol != nil { r.diagnostics.warning(nil, "ProxyProtocol", "ignored without ProxyTo=") }
            if proxyIdleTimeout != nil { r.diagnostics.warning(nil, "ProxyIdleTimeoutSec", "ignored without ProxyTo=") }
        }
        if pidFile != nil && type != .forking {
            r.diagnostics.warning(pidFileLine, "PIDFile", "ignored without Type=forking: porter knows the main process of other types")
        }
        var checked = Set<String>()
        for phase in CommandSequence.Phase.allCases {
            for c in commands[phase] ?? [] {
                for word in [c.path] + c.arguments where checked.insert(word).inserted {
                    do { _ = try specifiers.expand(word) } catch {
                        r.diagnostics.error(commandLines[phase] ?? execLine, phase.rawValue, error.message)
                    }
                }
            }
        }
        // The executable: absolute, or a plain name for the search path.
        if let path = try? specifiers.expand(exec.path), path.contains("/"), !path.hasPrefix("/") {
            r.diagnostics.error(execLine, "ExecStart", "executable path \(Quote.value(path)) is not absolute, expected /path/to/program or a plain name found in PATH")
        }
        if let wd = workingDirectory, let p = try? specifiers.expand(wd.raw) {
            let path = p.hasPrefix("-") ? String(p.dropFirst()) : p
            if path != "~" && !path.hasPrefix("/") {
                r.diagnostics.error(wd.line, "WorkingDirectory", "\(Quote.value(path)) is not an absolute path, expected /path, -/path or ~")
            }
        }
    }
}
