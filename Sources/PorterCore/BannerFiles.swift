/// Banner=, BannerSuccess=, BannerFail= of a socket unit (porter's keys,
/// xinetd's `banner`, `banner_success` and `banner_fail`): the files whose
/// text a connection porter accepted receives before anything else.
public struct BannerFiles: Equatable, Sendable {
    /// Banner=: to every connection, allowed or refused.
    public var always: String?
    /// BannerSuccess=: after Banner=, to a connection that is served.
    public var success: String?
    /// BannerFail=: after Banner=, to a connection refused by
    /// IPAddressAllow=/IPAddressDeny= or a per-source limit.
    public var fail: String?

    public init(always: String? = nil, success: String? = nil, fail: String? = nil) {
        self.always = always
        self.success = success
        self.fail = fail
    }

    public var isEmpty: Bool { always == nil && success == nil && fail == nil }

    /// The key a message about the banners names.
    public var firstKey: String { always != nil ? "Banner" : success != nil ? "BannerSuccess" : "BannerFail" }

    /// The largest banner porter writes: it goes out in one non-blocking
    /// write into a fresh connection's send buffer (never smaller than
    /// 4 KiB), so it can neither block the loop nor be cut.
    public static let maxBytes = 4096
}

/// The texts of a socket's banners, read when the configuration is loaded
/// (and again at each reload).
public struct Banners: Sendable, Equatable {
    public var always: [UInt8] = []
    public var success: [UInt8] = []
    public var fail: [UInt8] = []

    public init(always: [UInt8] = [], success: [UInt8] = [], fail: [UInt8] = []) {
        self.always = always
        self.success = success
        self.fail = fail
    }

    public var isEmpty: Bool { always.isEmpty && success.isEmpty && fail.isEmpty }

    /// What a connection receives: Banner= then BannerSuccess= or BannerFail=.
    public func text(served: Bool) -> [UInt8] { always + (served ? success : fail) }
}
