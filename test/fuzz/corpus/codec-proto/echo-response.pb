

Hello John
John’
John