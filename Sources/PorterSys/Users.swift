import CPorter
import Glibc

/// The user database, through NSS (getpwnam_r, getgrnam_r, getgrouplist).
public enum Users {
    public struct User: Sendable {
        public var name: String
        public var uid: UInt32
        public var gid: UInt32
        public var home: String
        public var shell: String

        public init(name: String, uid: UInt32, gid: UInt32, home: String, shell: String) {
            self.name = name
            self.uid = uid
            self.gid = gid
            self.home = home
            self.shell = shell
        }
    }

    /// By name or numeric id; nil when unknown. A numeric id without an
    /// entry is still a valid user (systemd allows it), with gid = uid.
    public static func user(_ nameOrID: String) -> User? {
        var pw = passwd()
        var result: UnsafeMutablePointer<passwd>? = nil
        var buffer = [CChar](repeating: 0, count: 16384)
        let id = UInt32(nameOrID)
        let r: Int32 = if let id {
            getpwuid_r(id, &pw, &buffer, buffer.count, &result)
        } else {
            getpwnam_r(nameOrID, &pw, &buffer, buffer.count, &result)
        }
        guard r == 0, result != nil else {
            if let id { return User(name: nameOrID, uid: id, gid: id, home: "/", shell: "/bin/sh") }
            return nil
        }
        return User(name: String(cString: pw.pw_name), uid: pw.pw_uid, gid: pw.pw_gid,
                    home: String(cString: pw.pw_dir), shell: String(cString: pw.pw_shell))
    }

    /// A group's id by name or numeric id; nil when unknown.
    public static func groupID(_ nameOrID: String) -> UInt32? {
        if let id = UInt32(nameOrID) { return id }
        var gr = Glibc.group()
        var result: UnsafeMutablePointer<Glibc.group>? = nil
        var buffer = [CChar](repeating: 0, count: 16384)
        guard getgrnam_r(nameOrID, &gr, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return gr.gr_gid
    }

    public static func groupName(_ gid: UInt32) -> String {
        var gr = Glibc.group()
        var result: UnsafeMutablePointer<Glibc.group>? = nil
        var buffer = [CChar](repeating: 0, count: 16384)
        guard getgrgid_r(gid, &gr, &buffer, buffer.count, &result) == 0, result != nil else { return String(gid) }
        return String(cString: gr.gr_name)
    }

    /// The groups `user` belongs to, `gid` included (what initgroups(3) would set).
    public static func groups(of user: String, gid: UInt32) -> [UInt32] {
        var count: Int32 = 64
        var list = [gid_t](repeating: 0, count: Int(count))
        if getgrouplist(user, gid, &list, &count) < 0 {
            list = [gid_t](repeating: 0, count: Int(count))
            guard getgrouplist(user, gid, &list, &count) >= 0 else { return [gid] }
        }
        return Array(list.prefix(Int(count)))
    }
}
