import Foundation

/// One table of results, printed as Markdown.
struct Table {
    var title: String
    var note: String = ""
    var columns: [String]
    var rows: [[String]] = []

    var markdown: String {
        var s = "### \(title)\n\n"
        if !note.isEmpty { s += note + "\n\n" }
        s += "| " + columns.joined(separator: " | ") + " |\n"
        s += "|" + columns.enumerated().map { $0.offset == 0 ? "---" : "---:" }.joined(separator: "|") + "|\n"
        for r in rows { s += "| " + r.joined(separator: " | ") + " |\n" }
        return s
    }
}

/// A target from issue #3 and whether this run met it.
struct Target {
    var name: String
    var goal: String
    var measured: String
    var met: Bool?   // nil: could not be measured
}

/// A bar chart panel: one value per system, relative to the floor.
struct Panel {
    var title: String
    var higherIsBetter: Bool
    var bars: [(name: String, ratio: Double)]
}

func fmt(_ v: Double, _ digits: Int = 1) -> String {
    v.isNaN || v.isInfinite ? "-" : String(format: "%.\(digits)f", v)
}

func ratio(_ a: Double, _ b: Double) -> String {
    a.isNaN || b.isNaN || b == 0 ? "-" : String(format: "%.2f", a / b)
}

enum Chart {
    /// Horizontal bars, one panel per measurement, the floor at 1.0.
    static func svg(_ panels: [Panel], caption: String) -> String {
        let width = 760.0, left = 190.0, barH = 16.0, gap = 6.0
        var y = 40.0
        var body = ""

        func esc(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
        }
        for p in panels {
            // Each panel on its own scale: one outlier must not flatten the rest.
            let maxRatio = max(1.25, p.bars.map(\.ratio).filter { $0.isFinite }.max() ?? 1.25)
            let scale = (width - left - 70) / maxRatio
            body += "<text x=\"10\" y=\"\(y)\" font-weight=\"bold\">\(esc(p.title)) (\(p.higherIsBetter ? "higher" : "lower") is better)</text>\n"
            y += 8
            let top = y
            for b in p.bars where b.ratio.isFinite {
                let w = max(1, b.ratio * scale)
                let color = b.name == "porter" ? "#d9480f" : (b.name.hasPrefix("floor") ? "#868e96" : "#4263eb")
                body += "<text x=\"\(left - 8)\" y=\"\(y + barH - 4)\" text-anchor=\"end\">\(esc(b.name))</text>\n"
                body += "<rect x=\"\(left)\" y=\"\(y)\" width=\"\(fmt(w))\" height=\"\(barH)\" fill=\"\(color)\"/>\n"
                body += "<text x=\"\(left + w + 4)\" y=\"\(y + barH - 4)\">\(String(format: "%.2f", b.ratio))</text>\n"
                y += barH + gap
            }
            let x1 = left + scale
            body += "<line x1=\"\(fmt(x1))\" y1=\"\(top - 2)\" x2=\"\(fmt(x1))\" y2=\"\(y)\" stroke=\"#212529\" stroke-dasharray=\"4 3\"/>\n"
            y += 22
        }
        return """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(y + 10))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="10" y="20" font-size="13">\(esc(caption)) — ratio to the floor (dashed line = 1.0)</text>
            \(body)</svg>

            """
    }
}
