import PorterCore
import PorterSys

extension ExitStatus: CustomStringConvertible {
    /// "status 1", "signal SIGKILL (core dumped)", as the log says it.
    public var description: String {
        switch self {
        case .exited(let code): return "status \(code)"
        case .signaled(let sig, let core): return "signal \(Values.signalName(sig))" + (core ? " (core dumped)" : "")
        }
    }
}
