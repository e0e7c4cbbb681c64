import Glibc
import PorterCore
import PorterSys

extension Commands {
    /// `porter import xinetd|inetd PATH --output DIR`: the units written
    /// into DIR (each file created whole under a temporary name, then
    /// renamed; an existing file is replaced only with --force), the report
    /// on stdout. Exits 1 when the input has errors (nothing is written)
    /// or DIR cannot be written.
    public static func importConfig(_ kind: LegacyConfig.Kind, _ path: String, output: String, servicesFile: String?,
                                    hostsAccess: String? = "/etc", force: Bool) -> Int32 {
        let result = LegacyConfig.load(kind, path, servicesFile: servicesFile, hostsAccess: hostsAccess)
        let errors = result.diagnostics.filter { $0.severity == .error }
        for d in result.diagnostics { Log.write(d.severity == .error ? .error : .warning, d.description) }
        guard errors.isEmpty else {
            Log.error("\(path): \(errors.count) error\(errors.count == 1 ? "" : "s"); nothing written")
            return 1
        }
        if (try? Files.status(output))??.isDirectory != true {
            guard mkdir(output, 0o755) == 0 else {
                Log.error("\(output): cannot create the directory: \(SysError.describe(errno))")
                return 1
            }
        }
        let dir: FileDescriptor
        do { dir = try Files.openDirectory(output) } catch {
            Log.error("\(output): \(error.reason)")
            return 1
        }
        defer { dir.close() }
        if !force {
            let existing = result.units.map(\.name).filter { Files.status(at: dir, $0) != nil }
            guard existing.isEmpty else {
                Log.error("\(output): \(existing.joined(separator: ", ")) already exist\(existing.count == 1 ? "s" : ""); nothing written (--force replaces them)")
                return 1
            }
        }
        for (name, text) in result.units {
            let temporary = ".\(name).import-\(getpid())"
            do {
                let fd = try Files.create(at: dir, temporary, mode: 0o644)
                let written = (try? fd.write(text)) ?? -1
                fd.close()
                guard written == text.utf8.count else {
                    unlinkat(dir.rawValue, temporary, 0)
                    Log.error("\(output)/\(name): short write; stopped")
                    return 1
                }
                try Files.rename(at: dir, temporary, to: dir, name)
            } catch {
                unlinkat(dir.rawValue, temporary, 0)
                Log.error("\(output)/\(name): \(error.reason)")
                return 1
            }
        }
        var report = result.render()
        report += "written to \(output): \(result.units.map(\.name).joined(separator: " "))\n"
        report += "check them with: porter check --config-dir \(output)\n"
        _ = try? FileDescriptor.standardOutput.write(report)
        return 0
    }
}
