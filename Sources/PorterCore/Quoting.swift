/// Splitting a value into words the way systemd's extract_first_word() does
/// with EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE: whitespace separates words;
/// single and double quotes group (and may start mid-word: a"b c"d is one
/// word, "ab cd"); C-style escapes (\n, \t, \\, \", \xNN, \NNN, \uNNNN, \s
/// for a space) are resolved inside and outside quotes.
public struct Word: Equatable, Sendable {
    public var text: String
    /// An unquoted, unescaped `;` on its own: systemd's command separator.
    public var isSeparator: Bool
}

public enum Quoting {
    public static func split(_ s: String) throws(ValueError) -> [Word] {
        var words: [Word] = []
        var current = ""
        var inWord = false
        var quote: Character? = nil
        var rawWord = ""   // the word as written, to recognise a bare ";"
        var chars = Array(s)
        chars.append(" ")  // flushes the last word
        var i = 0

        func flush() {
            if inWord {
                words.append(Word(text: current, isSeparator: rawWord == ";"))
            }
            current = ""
            rawWord = ""
            inWord = false
        }

        while i < chars.count {
            let c = chars[i]
            if let q = quote {
                if i == chars.count - 1 {
                    throw ValueError("unbalanced quoting in \(Quote.value(s)), expected a closing \(q)")
                }
                rawWord.append(c)
                if c == q {
                    quote = nil
                } else if c == "\\" {
                    let (text, used) = try unescape(chars, i + 1, s)
                    current += text
                    rawWord += String(chars[(i + 1)..<(i + 1 + used)])
                    i += used
                } else {
                    current.append(c)
                }
                i += 1
                continue
            }
            switch c {
            case " ", "\t", "\n", "\r":
                flush()
            case "\"", "'":
                quote = c
                inWord = true
                rawWord.append(c)
            case "\\":
                guard i + 1 < chars.count - 1 else {
                    throw ValueError("trailing backslash in \(Quote.value(s))")
                }
                let (text, used) = try unescape(chars, i + 1, s)
                current += text
                rawWord.append(c)
                rawWord += String(chars[(i + 1)..<(i + 1 + used)])
                inWord = true
                i += used
            default:
                current.append(c)
                rawWord.append(c)
                inWord = true
            }
            i += 1
        }
        return words
    }

    /// Resolves the escape whose letter is at `chars[at]`; returns the text
    /// and how many characters after the backslash it used.
    static func unescape(_ chars: [Character], _ at: Int, _ whole: String) throws(ValueError) -> (String, Int) {
        let c = chars[at]
        switch c {
        case "a": return ("\u{07}", 1)
        case "b": return ("\u{08}", 1)
        case "f": return ("\u{0C}", 1)
        case "n": return ("\n", 1)
        case "r": return ("\r", 1)
        case "t": return ("\t", 1)
        case "v": return ("\u{0B}", 1)
        case "s", " ": return (" ", 1)
        case "\\", "\"", "'", ";": return (String(c), 1)
        case "x":
            return try codePoint(chars, at + 1, digits: 2, radix: 16, whole, used: 1)
        case "u":
            return try codePoint(chars, at + 1, digits: 4, radix: 16, whole, used: 1)
        case "U":
            return try codePoint(chars, at + 1, digits: 8, radix: 16, whole, used: 1)
        case "0"..."7":
            return try codePoint(chars, at, digits: 3, radix: 8, whole, used: 0)
        default:
            throw ValueError("invalid escape '\\\(c)' in \(Quote.value(whole))")
        }
    }

    private static func codePoint(_ chars: [Character], _ from: Int, digits: Int, radix: Int, _ whole: String, used: Int) throws(ValueError) -> (String, Int) {
        guard from + digits <= chars.count else { throw ValueError("invalid escape in \(Quote.value(whole))") }
        let text = String(chars[from..<(from + digits)])
        guard let v = UInt32(text, radix: radix), v != 0, let scalar = Unicode.Scalar(v) else {
            throw ValueError("invalid escape '\\\(radix == 8 ? "" : String(chars[from - 1]))\(text)' in \(Quote.value(whole))")
        }
        return (String(Character(scalar)), used + digits)
    }
}
