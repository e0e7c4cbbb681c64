import Glibc
import PorterCore
import PorterSys

extension Supervisor {
    func upgradeRequested(by e: Exchange?) -> ControlReply? {
        ControlReply(error: "upgrade: not implemented yet")
    }
}
