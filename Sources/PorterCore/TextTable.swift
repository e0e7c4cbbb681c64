/// Columns of text padded to their widest cell and two spaces apart, the
/// last left ragged: `porter status` and the import report print with it.
public enum TextTable {
    /// `colour(row, column)`: an ANSI SGR code for a data cell (header
    /// excluded), or nil; the padding stays outside the colour.
    public static func render(header: [String], rows: [[String]], colour: ((Int, Int) -> String?)? = nil) -> String {
        var widths = header.map(\.count)
        for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
        func line(_ cells: [String], row: Int?) -> String {
            var out = ""
            for (i, c) in cells.enumerated() {
                let code = row.flatMap { colour?($0, i) }
                out += code.map { "\u{1B}[\($0)m" + c + "\u{1B}[0m" } ?? c
                if i < cells.count - 1 { out += String(repeating: " ", count: widths[i] - c.count + 2) }
            }
            return out + "\n"
        }
        return line(header, row: nil) + rows.enumerated().map { line($1, row: $0) }.joined()
    }
}

extension String {
    /// Spaces after the text up to `width` characters.
    public func padding(to width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
