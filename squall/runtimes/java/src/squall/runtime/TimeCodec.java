package squall.runtime;

import java.math.BigDecimal;
import java.time.Duration;
import java.time.Instant;
import java.time.LocalDate;
import java.time.LocalDateTime;
import java.time.LocalTime;
import java.time.MonthDay;
import java.time.OffsetDateTime;
import java.time.OffsetTime;
import java.time.Period;
import java.time.Year;
import java.time.YearMonth;
import java.time.ZoneId;
import java.time.ZoneOffset;
import java.time.ZonedDateTime;
import java.util.Calendar;
import java.util.Date;
import java.util.List;

/**
 * java.util.Date and java.time values, as Jackson with the JavaTimeModule writes them by
 * default (timestamps): Date as epoch milliseconds, Instant / OffsetDateTime / ZonedDateTime /
 * Duration as decimal seconds, LocalDate / LocalDateTime / LocalTime / YearMonth as arrays.
 * Reading also accepts ISO-8601 strings. Kept apart so java.time loads only when used.
 */
final class TimeCodec {
    private TimeCodec() {
    }

    static boolean write(JsonWriter w, Object v) {
        if (v instanceof Date) {
            w.raw(Long.toString(((Date) v).getTime()));
        } else if (v instanceof Calendar) {
            w.raw(Long.toString(((Calendar) v).getTimeInMillis()));
        } else if (v instanceof Instant) {
            Instant i = (Instant) v;
            w.raw(decimal(i.getEpochSecond(), i.getNano()));
        } else if (v instanceof OffsetDateTime) {
            Instant i = ((OffsetDateTime) v).toInstant();
            w.raw(decimal(i.getEpochSecond(), i.getNano()));
        } else if (v instanceof ZonedDateTime) {
            Instant i = ((ZonedDateTime) v).toInstant();
            w.raw(decimal(i.getEpochSecond(), i.getNano()));
        } else if (v instanceof Duration) {
            Duration d = (Duration) v;
            w.raw(decimal(d.getSeconds(), d.getNano()));
        } else if (v instanceof LocalDate) {
            LocalDate d = (LocalDate) v;
            w.raw("[" + d.getYear() + "," + d.getMonthValue() + "," + d.getDayOfMonth() + "]");
        } else if (v instanceof LocalDateTime) {
            LocalDateTime d = (LocalDateTime) v;
            w.raw("[" + d.getYear() + "," + d.getMonthValue() + "," + d.getDayOfMonth() + "," + d.getHour() + ","
                    + d.getMinute() + timeTail(d.getSecond(), d.getNano()) + "]");
        } else if (v instanceof LocalTime) {
            LocalTime t = (LocalTime) v;
            w.raw("[" + t.getHour() + "," + t.getMinute() + timeTail(t.getSecond(), t.getNano()) + "]");
        } else if (v instanceof YearMonth) {
            YearMonth ym = (YearMonth) v;
            w.raw("[" + ym.getYear() + "," + ym.getMonthValue() + "]");
        } else if (v instanceof Year) {
            w.raw(Integer.toString(((Year) v).getValue()));
        } else if (v instanceof MonthDay || v instanceof Period || v instanceof ZoneId || v instanceof OffsetTime) {
            w.string(v.toString());
        } else {
            return false;
        }
        return true;
    }

    private static String timeTail(int second, int nano) {
        if (second == 0 && nano == 0) {
            return "";
        }
        return nano == 0 ? "," + second : "," + second + "," + nano;
    }

    private static String decimal(long seconds, int nanos) {
        if (nanos == 0) {
            return seconds + ".0";
        }
        return new BigDecimal(seconds).add(BigDecimal.valueOf(nanos, 9)).toPlainString();
    }

    static Object read(JsonReader r, Class<?> c) {
        Object token = r.scalarToken();
        if (token == null) {
            return null;
        }
        if (token instanceof String && ((String) token).trim().isEmpty()) {
            return null;
        }
        if (c == Date.class) {
            if (token instanceof Number) {
                return new Date(((Number) token).longValue());
            }
            return Date.from(instant((String) token));
        }
        if (c == Instant.class) {
            return token instanceof Number ? fromSeconds((Number) token) : instant((String) token);
        }
        if (c == OffsetDateTime.class) {
            return token instanceof Number ? OffsetDateTime.ofInstant(fromSeconds((Number) token), ZoneOffset.UTC)
                    : OffsetDateTime.parse((String) token);
        }
        if (c == ZonedDateTime.class) {
            return token instanceof Number ? ZonedDateTime.ofInstant(fromSeconds((Number) token), ZoneOffset.UTC)
                    : ZonedDateTime.parse((String) token);
        }
        if (c == Duration.class) {
            if (token instanceof Number) {
                Instant i = fromSeconds((Number) token);
                return Duration.ofSeconds(i.getEpochSecond(), i.getNano());
            }
            return Duration.parse((String) token);
        }
        if (token instanceof List) {
            List<?> parts = (List<?>) token;
            int[] p = new int[7];
            for (int i = 0; i < parts.size() && i < 7; i++) {
                p[i] = ((Number) parts.get(i)).intValue();
            }
            if (c == LocalDate.class) {
                return LocalDate.of(p[0], p[1], p[2]);
            }
            if (c == LocalDateTime.class) {
                return LocalDateTime.of(p[0], p[1], p[2], p[3], p[4], p[5], p[6]);
            }
            if (c == LocalTime.class) {
                return LocalTime.of(p[0], p[1], p[2], p[3]);
            }
            if (c == YearMonth.class) {
                return YearMonth.of(p[0], p[1]);
            }
        }
        String text = String.valueOf(token);
        if (c == LocalDate.class) {
            return LocalDate.parse(text);
        }
        if (c == LocalDateTime.class) {
            return LocalDateTime.parse(text);
        }
        if (c == LocalTime.class) {
            return LocalTime.parse(text);
        }
        if (c == YearMonth.class) {
            return YearMonth.parse(text);
        }
        if (c == Year.class) {
            return Year.of(Integer.parseInt(text));
        }
        if (c == MonthDay.class) {
            return MonthDay.parse(text);
        }
        if (c == Period.class) {
            return Period.parse(text);
        }
        if (c == ZoneOffset.class) {
            return ZoneOffset.of(text);
        }
        if (ZoneId.class.isAssignableFrom(c)) {
            return ZoneId.of(text);
        }
        if (c == OffsetTime.class) {
            return OffsetTime.parse(text);
        }
        throw new JsonException("Cannot deserialize value of type `" + c.getName() + "`");
    }

    private static Instant fromSeconds(Number n) {
        BigDecimal d = new BigDecimal(n.toString());
        long seconds = d.setScale(0, java.math.RoundingMode.FLOOR).longValueExact();
        int nanos = d.subtract(BigDecimal.valueOf(seconds)).movePointRight(9).intValue();
        return Instant.ofEpochSecond(seconds, nanos);
    }

    private static Instant instant(String text) {
        String t = text.trim();
        if (!t.isEmpty() && (Character.isDigit(t.charAt(0)) || t.charAt(0) == '-') && t.indexOf('-', 1) < 0) {
            return Instant.ofEpochMilli(Long.parseLong(t));
        }
        try {
            return OffsetDateTime.parse(t).toInstant();
        } catch (RuntimeException e) {
            // not with an offset
        }
        try {
            return LocalDateTime.parse(t).toInstant(ZoneOffset.UTC);
        } catch (RuntimeException e) {
            // a bare date
        }
        return LocalDate.parse(t).atStartOfDay().toInstant(ZoneOffset.UTC);
    }
}
