From: Lisa Meier <lisa.meier@web.de>
To: Chiara Conti <chiara@example.com>
Subject: Praktikum im Vertrieb?
Date: Fri, 20 Nov 2026 08:55:00 +0100
Message-ID: <792cf498a95718ef.67eeb@web.de>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Hi Chiara,

Hello, I found your address online.

Best,
Lisa
