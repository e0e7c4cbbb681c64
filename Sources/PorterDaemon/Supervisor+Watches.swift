import Glibc
import PorterCore
import PorterSys

/// Who relies on an inotify watch: which condition of which path unit, and
/// in what role.
///   target    the watched path itself (PathChanged=, PathModified=)
///   parent    the directory that holds it: its appearance, removal, renames
///   directory DirectoryNotEmpty= and PathExistsGlob= (Accept=no): entries
///   files     Accept=yes: files closed after writing or moved in
///   ancestor  the deepest existing directory above a path that does not
///             exist yet, until the next component appears
struct WatchUse: Hashable {
    enum Role: Hashable { case target, parent, directory, files, ancestor }
    var path: UnitID
    var condition: Int
    var role: Role
}

/// Path units' inotify watches: set up through verified directories, and
/// dropped again.
extension Supervisor {
    static func mask(for role: WatchUse.Role, _ kind: PathCondition.Kind) -> Inotify.Mask {
        switch role {
        case .target:
            let changed: Inotify.Mask = [.closeWrite, .attrib, .create, .delete, .deleteSelf, .moveSelf, .movedFrom, .movedTo]
            return kind == .modified ? changed.union(.modify) : changed
        case .parent: return [.create, .movedTo, .movedFrom, .delete, .deleteSelf, .moveSelf, .onlyDirectory]
        case .directory: return [.create, .movedTo, .deleteSelf, .moveSelf, .onlyDirectory]
        case .files: return [.closeWrite, .movedTo, .movedFrom, .delete, .deleteSelf, .moveSelf, .onlyDirectory]
        case .ancestor: return [.create, .movedTo, .deleteSelf, .moveSelf, .onlyDirectory]
        }
    }

    // MARK: Watches

    /// (Re)creates the watches of one condition. The directory it looks
    /// into is resolved through SafePath and kept open; the watches are
    /// added through /proc/self/fd/N, so they sit on the verified inodes.
    /// When the directory is missing or refused, the deepest verified
    /// directory above it is watched instead, until the next component
    /// appears or the symlink is replaced. Each watch is added before the
    /// next look, so a directory created in between is either seen by the
    /// look or reported by the watch. Returns whether the path appeared or
    /// vanished since the last look.
    @discardableResult
    func setUpWatches(_ rt: PathRuntime, _ c: Int) -> Bool {
        guard let inotify else { return false }
        let cond = rt.config.conditions[c]
        dropWatches(rt, c)
        var added: [Int32] = []
        func add(_ dir: FileDescriptor, _ name: String?, _ role: WatchUse.Role, follow: Bool = true) {
            var mask = Self.mask(for: role, cond.kind)
            if !follow { mask.insert(.dontFollow) }
            guard let wd = try? inotify.add(SafePath.procPath(dir, name), mask: mask) else { return }
            added.append(wd)
            watches[wd, default: []].insert(WatchUse(path: rt.id, condition: c, role: role))
        }
        let isDirectoryCondition = cond.kind == .directoryNotEmpty || cond.kind == .existsGlob
        let looked = cond.watchedDirectory
        var lastAncestor: String? = nil
        for _ in 0..<8 {
            let outcome: SafePath.Outcome
            do { outcome = try SafePath.open(looked, trust: .porter) } catch {
                refuse(rt, c, "\(looked): \(error.reason)")
                break
            }
            switch outcome {
            case .found(let dir):
                // Per-file units keep the fd: every job opens and moves its
                // file through it. Other units look again when an event
                // comes (rarely), so 10 000 of them cost no fd at all.
                rt.refusals[c] = nil
                if isDirectoryCondition {
                    add(dir, nil, rt.config.accept ? .files : .directory)
                } else {
                    // The parent first: a target created after the attempt
                    // below is then reported by it (and watched on the redo).
                    add(dir, nil, .parent)
                    // The target itself; a symlink there is followed only
                    // where nobody else could have placed it.
                    if cond.kind != .exists {
                        add(dir, PathCondition.baseName(of: cond.path), .target, follow: SafePath.allowsLinks(in: dir, trust: .porter))
                    }
                }
                if rt.config.accept { rt.directories[c] = dir } else { dir.close() }
            case .missing(let ancestor, let at), .notDirectory(let ancestor, let at, _):
                rt.refusals[c] = nil
                add(ancestor, nil, .ancestor)
                ancestor.close()
                // Appeared since the look? Then look again.
                if at != lastAncestor { lastAncestor = at; continue }
            case .refused(let ancestor, let at, let reason):
                refuse(rt, c, reason)
                add(ancestor, nil, .ancestor)
                ancestor.close()
                if at != lastAncestor { lastAncestor = at; continue }
            }
            break
        }
        rt.watchDescriptors[c] = added
        let exists = conditionPathExists(rt, c)
        defer { rt.existed[c] = exists }
        return exists != rt.existed[c]
    }

    /// A condition's directory cannot be used: said once per reason.
    private func refuse(_ rt: PathRuntime, _ c: Int, _ reason: String) {
        guard rt.refusals[c] != reason else { return }
        rt.refusals[c] = reason
        let cond = rt.config.conditions[c]
        Log.error("\(rt.config.sources.at(cond.line)): \(cond.kind.rawValue): \(reason); not watching \(cond.path) until that changes")
    }

    /// Calls `body` with the verified directory a condition looks into:
    /// the one a per-file unit holds, or for other units a fresh resolution
    /// (closed afterwards). nil while it is missing or refused.
    func withDirectory<T>(_ rt: PathRuntime, _ c: Int, _ body: (FileDescriptor) -> T) -> T? {
        if let dir = rt.directories[c] { return body(dir) }
        guard !rt.config.accept else { return nil }
        let cond = rt.config.conditions[c]
        guard let dir = SafePath.existingDirectory(cond.watchedDirectory, trust: .porter) else { return nil }
        defer { dir.close() }
        return body(dir)
    }

    /// Whether the condition's path exists, looked up in its verified directory.
    func conditionPathExists(_ rt: PathRuntime, _ c: Int) -> Bool {
        let cond = rt.config.conditions[c]
        return withDirectory(rt, c) { dir in
            switch cond.kind {
            case .directoryNotEmpty, .existsGlob: return true
            case .exists, .changed, .modified:
                return Files.status(at: dir, PathCondition.baseName(of: cond.path), follow: SafePath.allowsLinks(in: dir, trust: .porter)) != nil
            }
        } ?? false
    }

    func dropWatches(_ rt: PathRuntime, _ c: Int) {
        rt.directories[c]?.close()
        rt.directories[c] = nil
        for wd in rt.watchDescriptors[c] {
            guard let uses = watches[wd] else { continue }
            watches[wd] = uses.filter { $0.path != rt.id || $0.condition != c }
            if watches[wd]!.isEmpty {
                watches[wd] = nil
                inotify?.remove(wd)
            }
        }
        rt.watchDescriptors[c] = []
    }

}
